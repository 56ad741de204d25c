"""The selection rule: :func:`select` ``(summary, tolerance) -> Verdict`` (validation only).

The candidates are the summary's rows, (method, prediction) pairs (``multitask``,
``multitask+stacked``), each with its own selected epoch per seed; "method" below means
such a candidate. Each method's score is its mean ``selection_score`` over seeds (the validation
accuracy at the epoch its validation split selected; cross-fitted for a method
that fits on validation). Not selectable: a method that fits on validation whose
runs were not cross-fitted, one that did not finish every seed, one without a
score. The selected method has the best score, except that methods within
``tolerance`` (default 0.005: half a point of accuracy) of the best go to the
first of them in the tie order (:func:`~ogmge.training.compare.lookups.tie_key`;
simplest first: the method's ``tie_rank``, then its fused prediction before its
stacked one). Half a point is below the seed-to-seed spread of validation
accuracy on a few hundred validation samples (one sample of 300 is a third of a
point), so a smaller margin would pick a method on noise. A modality alone is never
selected; ``fused_below_best_unimodal`` says when the selected method's score is
below the best modality alone's mean validation accuracy. The test split selects
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..results import CROSS_FIT
from .lookups import candidate_order, fits_on_validation, tie_key
from .summary import Summary, mean_std

#: Default tie tolerance (fraction of accuracy): 0.005 = half a point.
TIE_TOLERANCE = 0.005


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`select`.

    ``scores``: method -> mean selection score (selectable methods only);
    ``best_score_method``: the best of them; ``within_tolerance``: those within
    ``tolerance`` of the best, in tie order; ``selected``: the first of those (None when
    nothing is selectable); ``not_selectable``: method -> reason.
    """

    selected: str | None
    scores: dict[str, float]
    best_score_method: str | None
    within_tolerance: list[str]
    not_selectable: dict[str, str]
    fused_below_best_unimodal: bool
    tolerance: float
    tie_order: list[str]


def check_tolerance(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"tie_tolerance must be a finite number >= 0, got {value!r}")
    return float(value)


def not_selectable_reason(summary: Summary, method: str) -> str | None:
    """Why ``method`` cannot be selected, or None."""
    e = summary.methods[method]
    protocols = e.val_protocol if isinstance(e.val_protocol, list) else [e.val_protocol]
    if fits_on_validation(method) and any(p != CROSS_FIT for p in protocols):
        return (f"{method} fits on the validation split, so its validation accuracy is optimistic; its runs do "
                f"not report a cross-fitted score (val_protocol 'cross-fit' in results.json), so it is not "
                f"selected")
    if CROSS_FIT in protocols and any(s is None for s in e.selection_score):
        return f"{method}: results.json says val_protocol 'cross-fit' but gives no score"
    if not summary.complete(method):
        return f"{method}: finished {len(e.seeds)} of {len(summary.seeds)} seeds; not selected"
    if math.isnan(mean_std(e.selection_score)[0]):
        return f"{method}: no validation score; not selected"
    return None


def select(summary: Summary, tolerance: float = TIE_TOLERANCE) -> Verdict:
    """The verdict of ``summary`` (module docstring)."""
    tol = check_tolerance(tolerance)
    scores: dict[str, float] = {}
    refused: dict[str, str] = {}
    for m, e in summary.methods.items():
        why = not_selectable_reason(summary, m)
        if why is None:
            scores[m] = mean_std(e.selection_score)[0]
        else:
            refused[m] = why
    if scores:
        best = max(scores.values())
        tied = sorted((m for m, s in scores.items() if s >= best - tol - 1e-12), key=tie_key)
        selected: str | None = tied[0]
        best_method: str | None = max(scores, key=lambda m: scores[m])
    else:
        tied, selected, best_method = [], None, None
    below = bool(selected and summary.best_unimodal_val is not None
                 and scores[selected] < summary.best_unimodal_val)
    return Verdict(selected, scores, best_method, tied, refused, below, tol, candidate_order())


__all__ = ["TIE_TOLERANCE", "Verdict", "check_tolerance", "not_selectable_reason", "select"]
