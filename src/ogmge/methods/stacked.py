"""The ``stacked`` prediction rule: a validation-fitted log-linear pool of heads (this project's).

Stacking (Wolpert, "Stacked generalization", Neural Networks 1992) of a model's own
heads as a selectable head combiner. The prediction is

    sum_m w_m * log_softmax(o_m),   m in members

with ``w`` on the simplex minimising the validation split's negative
log-likelihood of ``softmax(sum_m w_m log_softmax(o_m))`` (convex in ``w``; the fit
is :func:`~ogmge.methods.fit_simplex_weights`, refitted at each evaluation). The
members are the fusion head and every modality head (``("fused", *modalities)``),
or the modality heads only for a method without a trained fusion head (the
unimodal ensemble). The simplex's vertices are the single members, so on the data
it is fitted on the pool is never worse in NLL than the best single member; its
selection score is cross-fitted (fit on one half of validation, score the other).

Usable with every method that trains per-modality heads (``multitask``,
``mmpareto``, ``gblend``, ``uni_ensemble``, ...): it changes the prediction, never
the training objective.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ogmge.validation import check_number, check_positive_int

from .base import FUSED, check_modalities
from .uni_ensemble import ensemble_logits, fit_simplex_weights


class StackedPrediction:
    """Fit and apply the stacked pool (module docstring).

    ``modalities``: two or more names; ``with_fused`` (default True): the fusion head
    is a member. Keyword-only: ``max_steps`` (>= 1) and ``tol`` (> 0) of the fit.
    """

    name = "stacked"

    def __init__(self, modalities, *, with_fused: bool = True, max_steps: int = 500, tol: float = 1e-10) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if not isinstance(with_fused, bool):
            raise ValueError(f"with_fused must be true or false, got {with_fused!r}")
        self.with_fused = with_fused
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.tol = check_number("tol", tol, lo=0.0, lo_open=True)
        self.weights = torch.full((len(self.members),), 1.0 / len(self.members), dtype=torch.float64)

    @property
    def members(self) -> tuple[str, ...]:
        """The pool's members in weight order."""
        return (FUSED, *self.modalities) if self.with_fused else self.modalities

    def fit(self, head_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Fit ``w`` on held-out logits ``{member: (M, C)}`` (every member needed)."""
        missing = [m for m in self.members if m not in head_logits]
        if missing:
            raise ValueError(f"the stacked prediction's fit needs the held-out logits of {list(self.members)}; "
                             f"missing {missing}")
        self.weights = fit_simplex_weights(head_logits, labels, self.members, max_steps=self.max_steps, tol=self.tol)
        return self.weights

    def predict(self, head_logits: Mapping[str, Tensor]) -> Tensor:
        """``sum_m w_m log_softmax(o_m)`` over :attr:`members`."""
        return ensemble_logits(head_logits, self.weights, self.members)

    def state_dict(self) -> dict:
        return {"weights": self.weights.clone(), "members": list(self.members)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("members", [])) != list(self.members):
            raise ValueError(f"stacked prediction state is for {state.get('members')}, this one has "
                             f"{list(self.members)}")
        self.weights = torch.as_tensor(state["weights"], dtype=torch.float64).clone()

    def __repr__(self) -> str:
        return f"StackedPrediction(members={list(self.members)})"
