"""Every prediction rule of a run's method, each with its own selected epoch: ``compare``'s
(method, prediction) pairs from one training.

A method declares the prediction rules it supports (``predictions``, the first its
default); a run predicts with one (``prediction``). Training does not depend on the
rule (the rule turns trained outputs into a prediction), so one run serves every rule.
Beside its own, the trainer evaluates each other declared rule that the model can
compute (``fused`` needs a trained fusion head; the ``stacked`` pools, ``blend`` and
``ensemble``, the modality heads) at every epoch, from the validation outputs the run's
own rule was scored on (no second pass):

- ``fused``: the fusion head's metrics;
- a pool: cross-fitted as a run predicting with it is (``balancing``): ``w`` fitted on
  half A scores half B and the reverse, then ``w`` refitted on the whole split.

(Under ``cross_fit = "split"`` only half B scores, as for the run's own rule.)

**Selection.** Each rule has its own copy of the run's stopping rule, so its own best
epoch: exactly the epoch a run predicting with that rule would select. A rule stops
updating once its own patience is exhausted, and the run ends when every rule has
stopped (a rule that stopped keeps the selection it had then, so the run's own rule
selects as it would alone).

**Test.** When a rule's epoch becomes its best, the test split (and the held-out half,
``val_selection: {holdout: true}``) is evaluated then, with that rule and the weights
fitted on the whole validation split, *after* the decision; the figures are stored and
nothing that selects reads them. No checkpoint per rule is written: ``results.json``
(``pairs``) keeps each rule's selected epoch, its validation, test (and held-out)
metrics and its fitted weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ogmge.models.combiner import FITTED_RULES, RULE_LABELS, Combiner

from .balancing import _cross_fit_combination, halves
from .metrics import metrics_from_outputs, subset
from .results import CROSS_FIT, PLAIN
from .stopping import RawRule

#: Scalar validation metrics of each other rule in an epoch's metrics row (``pairs/<rule>/val/<k>``).
ROW_METRICS = ("acc", "macro_f1", "loss")


def computable(rule: str, model: Any) -> bool:
    """Whether ``model`` yields what ``rule`` combines (a :class:`Combiner`-holding model)."""
    comb = getattr(model, "combiner", None)
    if not isinstance(comb, Combiner) or len(getattr(model, "modalities", ())) < 2:
        return False
    if rule != "ensemble" and not comb.uses_fusion:  # the fusion head was frozen, never trained
        return False
    return rule == "fused" or getattr(model, "heads", None) is not None


class _Rule:
    """One other rule: its combiner, its selection state and what its best epoch measured."""

    def __init__(self, rule: str, modalities: Sequence[str], stopping: RawRule) -> None:
        self.rule = rule
        self.combiner = Combiner(rule, modalities)
        self.stopping = stopping
        self.best: dict[str, Any] = {"epoch": -1, "val": None, "test": None, "holdout": None, "weights": None}

    def stopped(self, epoch: int) -> bool:
        """Whether the rule's selection ended before ``epoch`` (its patience ran out after an earlier one)."""
        return epoch > 0 and self.stopping.should_stop(epoch - 1)


class PredictionPairs:
    """The other prediction rules of a run (module docstring); empty when there are none.

    ``rules``: the rules to evaluate beside the run's own; ``make_rule()``: a fresh
    stopping rule like the run's; ``fits_on_validation``/``cross_fit``: the method's
    declarations; ``seed``: the run's (its validation halves)."""

    def __init__(self, rules: Sequence[str], modalities: Sequence[str], make_rule: Callable[[], RawRule], *,
                 fits_on_validation: bool = False, cross_fit: str | None = None, seed: int = 0) -> None:
        self.rules = {r: _Rule(r, modalities, make_rule()) for r in rules}
        self.fits_on_validation = fits_on_validation
        self.cross_fit = cross_fit
        self.seed = seed

    @classmethod
    def build(cls, method: Any, model: Any, own: str, make_rule: Callable[[], RawRule], *, has_val: bool,
              seed: int) -> PredictionPairs:
        """The rules ``method`` declares besides ``own`` that ``model`` can compute (none without validation)."""
        declared = tuple(getattr(type(method), "predictions", ()))
        rules = [r for r in declared if r != own and has_val and computable(r, model)]
        return cls(rules, tuple(getattr(model, "modalities", ())), make_rule,
                   fits_on_validation=bool(method.fits_on_validation), cross_fit=method.cross_fit, seed=seed)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def protocol(self, rule: str) -> str:
        return CROSS_FIT if self.fits_on_validation or rule in FITTED_RULES else PLAIN

    # ------------------------------------------------------------------ per epoch
    def validate(self, epoch: int, outputs: Mapping) -> tuple[dict, list[str]]:
        """``(metrics-row entries, rules whose best epoch this is)`` from the validation outputs."""
        scored = dict(outputs)
        if self.cross_fit == "split":  # the method saw half A; half B scores
            scored = subset(outputs, halves(int(outputs["labels"].numel()), self.seed)[1])
        fused = scored.get("fused_logits", scored["logits"])
        row: dict = {}
        improved = []
        for rule, st in self.rules.items():
            base = dict(scored, logits=fused, fused_logits=fused)
            if st.combiner.fitted:
                metrics = _cross_fit_combination(st.combiner, base, self.seed)  # refits on the whole split
            else:
                metrics = metrics_from_outputs(base)
            for k in ROW_METRICS:
                if k in metrics:
                    row[f"pairs/{rule}/val/{k}"] = metrics[k]
            for m, w in zip(st.combiner.members, self.weights(rule) or []):
                row[f"pairs/{rule}/w/{m}"] = w
            best = False
            if not st.stopped(epoch):
                best = st.stopping.update(epoch, metrics).is_best
            if best:
                st.best = {"epoch": epoch, "val": metrics, "test": None, "holdout": None,
                           "weights": self.weights(rule)}
                improved.append(rule)
            row[f"pairs/{rule}/best"] = best
        return row, improved

    def weights(self, rule: str) -> list[float] | None:
        comb = self.rules[rule].combiner
        return [float(w) for w in comb.weights] if comb.fitted else None

    def record(self, split: str, rules: Sequence[str], outputs: Mapping) -> None:
        """``split``'s metrics (``"test"``/``"holdout"``) of ``rules`` at their new best epoch,
        from that split's outputs (with each rule's weights fitted on validation)."""
        for rule in rules:
            st = self.rules[rule]
            fused = outputs.get("fused_logits", outputs["logits"])
            logits = st.combiner(fused, outputs["head_logits"]) if st.combiner.fitted else fused
            metrics = metrics_from_outputs(dict(outputs, logits=logits,
                                                fused_logits=fused if st.combiner.uses_fusion else logits))
            st.best[split] = metrics

    def should_stop(self, last_epoch: int) -> bool:
        """Whether every other rule's selection has ended after ``last_epoch`` (True when there are none)."""
        return all(st.stopping.should_stop(last_epoch) for st in self.rules.values())

    # ------------------------------------------------------------------ state and results
    def state_dict(self) -> dict:
        return {r: {"stopping": st.stopping.state_dict(), "best": dict(st.best)} for r, st in self.rules.items()}

    def load_state_dict(self, state: Mapping) -> None:
        missing = sorted(set(self.rules) - set(state))
        if missing:
            raise ValueError(f"the checkpoint has no selection state for the prediction rules {missing}")
        for r, st in self.rules.items():
            st.stopping.load_state_dict(state[r]["stopping"])
            st.best = dict(state[r]["best"])

    def results(self) -> dict:
        """``results.json``'s ``pairs``: ``{rule: {label, best_epoch, selected_by, val_protocol, val,
        test[, holdout], weights}}``."""
        out = {}
        for r, st in self.rules.items():
            entry = {"label": RULE_LABELS.get(r, r), "best_epoch": st.best["epoch"],
                     "selected_by": st.stopping.describe(), "val_protocol": self.protocol(r),
                     "val": st.best["val"], "test": st.best["test"], "weights": st.best["weights"]}
            if st.best.get("holdout") is not None:
                entry["holdout"] = st.best["holdout"]
            out[r] = entry
        return out


__all__ = ["ROW_METRICS", "PredictionPairs", "computable"]
