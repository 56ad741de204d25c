"""Early stopping and epoch selection: which epoch a run keeps, and when it ends.

A rule sees each epoch's validation metrics once (``update``) and says whether that
epoch is the new selected one and whether training should end after it. Its
``state_dict`` goes into every checkpoint, so a resumed run selects and stops as an
uninterrupted one would. Rules are named with their version (``RULES``); a run
records the versioned name in its config (``stopping``), so a run keeps the rule it
started with even after the rule's constants change in a later release.

``raw_v1`` (the rule before ``smoothed`` existed; runs whose config has no
``stopping`` key): the epoch of highest validation accuracy (ties keep the earlier
one); stop once ``patience`` epochs have passed without a better one.

``smoothed_v1`` (default for generic encoders): a small validation split (one
held-out speaker) makes validation accuracy jump by several points from epoch to
epoch, so the raw rule can stop on a lucky early peak. Here, with ``E`` the epoch
budget at the start of the run:

* signal: the mean validation accuracy of the last ``w`` epochs (fewer at the
  start), ``w = min(5, max(1, E // 8))``; ties (within 1e-12) go to the lower mean
  validation loss over the same epochs, then to the earlier epoch;
* the selected epoch is the one where the signal is highest (its weights are
  the checkpoint kept, so the selection stays causal);
* stop after epoch ``t`` (0-based) when ``t + 1 >= ceil(0.4 E)`` and
  ``t - selected >= patience``; ``patience: auto`` means ``max(10, ceil(E / 4))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Tolerance under which two smoothed accuracies count as a tie.
TIE_TOL = 1e-12


@dataclass(frozen=True)
class Decision:
    """What a rule says after one epoch."""

    is_best: bool
    stop: bool
    score: float


class RawRule:
    """Highest raw validation accuracy, fixed patience (the rule of runs without ``stopping``)."""

    name = "raw"
    version = 1
    #: What ``patience: auto`` means under this rule.
    AUTO_PATIENCE = 10

    def __init__(self, *, epochs: int, patience: int | str | None) -> None:
        self.epochs = int(epochs)
        self.patience: int | None = self.AUTO_PATIENCE if patience == "auto" else (
            None if patience is None else int(patience))
        self.best_epoch = -1
        self.best_score = float("-inf")
        self.last_epoch = -1

    @property
    def id(self) -> str:
        return f"{self.name}_v{self.version}"

    @property
    def min_epochs(self) -> int:
        return 0

    def describe(self) -> str:
        return "val acc"

    def update(self, epoch: int, val: dict | None) -> Decision:
        self.last_epoch = epoch
        score = float("-inf") if val is None else float(val["acc"])
        is_best = val is None or score > self.best_score
        if is_best:
            self.best_epoch, self.best_score = epoch, score
        return Decision(is_best, self.should_stop(epoch), score)

    def should_stop(self, last_epoch: int) -> bool:
        """Whether training ends after ``last_epoch`` (a pure function of the state)."""
        if not self.patience or self.best_epoch < 0 or last_epoch + 1 < self.min_epochs:
            return False
        return last_epoch - self.best_epoch >= self.patience

    def _params(self) -> dict:
        return {"epochs": self.epochs, "patience": self.patience}

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.id, "params": self._params(), "best_epoch": self.best_epoch,
                "best_score": self.best_score, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rule") != self.id:
            raise ValueError(f"stopping state of rule {state.get('rule')!r} cannot be loaded into {self.id!r}")
        for key, value in state["params"].items():
            setattr(self, key, value)
        self.best_epoch = int(state["best_epoch"])
        self.best_score = float(state["best_score"])
        self.last_epoch = int(state["last_epoch"])


class SmoothedRule(RawRule):
    """Trailing mean of validation accuracy (ties: mean validation loss), budget-relative
    minimum epochs and patience (module docstring)."""

    name = "smoothed"
    version = 1
    MAX_WINDOW = 5
    MIN_FRACTION = 0.4
    PATIENCE_FRACTION = 0.25
    MIN_PATIENCE = 10

    def __init__(self, *, epochs: int, patience: int | str | None) -> None:
        epochs = int(epochs)
        if patience == "auto":
            patience = max(self.MIN_PATIENCE, math.ceil(self.PATIENCE_FRACTION * epochs))
        super().__init__(epochs=epochs, patience=patience)
        self.window = min(self.MAX_WINDOW, max(1, epochs // 8))
        self._min_epochs = math.ceil(self.MIN_FRACTION * epochs)
        self.recent: list[list[float]] = []  # [acc, loss] of the last ``window`` epochs
        self.best_loss = float("inf")

    @property
    def min_epochs(self) -> int:
        return self._min_epochs

    def describe(self) -> str:
        return "val acc" if self.window == 1 else f"val acc, mean of {self.window} epochs"

    def update(self, epoch: int, val: dict | None) -> Decision:
        self.last_epoch = epoch
        if val is None:  # nothing to select on: the last epoch is kept
            self.best_epoch = epoch
            return Decision(True, False, float("-inf"))
        loss = float(val.get("loss", float("nan")))
        self.recent = (self.recent + [[float(val["acc"]), loss]])[-self.window:]
        score = sum(a for a, _ in self.recent) / len(self.recent)
        mean_loss = sum(v for _, v in self.recent) / len(self.recent)
        if score > self.best_score + TIE_TOL:
            is_best = True
        elif abs(score - self.best_score) <= TIE_TOL:
            is_best = mean_loss < self.best_loss
        else:
            is_best = False
        if is_best:
            self.best_epoch, self.best_score, self.best_loss = epoch, score, mean_loss
        return Decision(is_best, self.should_stop(epoch), score)

    def _params(self) -> dict:
        return {**super()._params(), "window": self.window, "_min_epochs": self._min_epochs}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "recent": [list(r) for r in self.recent], "best_loss": self.best_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.recent = [list(map(float, r)) for r in state["recent"]]
        self.best_loss = float(state["best_loss"])


#: Rules by versioned name; ``stopping`` in a config is one of these (or a name without
#: its version, or ``auto``, resolved by ``resolve``).
RULES: dict[str, type[RawRule]] = {"raw_v1": RawRule, "smoothed_v1": SmoothedRule}
#: The current version of each rule name.
CURRENT = {"raw": "raw_v1", "smoothed": "smoothed_v1"}
#: The rule of a run whose config has no ``stopping`` key (made before rules had names).
LEGACY = "raw_v1"
CHOICES = ("auto", *CURRENT, *RULES)


def resolve(stopping: str, builder: str) -> str:
    """The versioned rule ``stopping`` means: ``auto`` is ``raw`` for the paper's encoders
    (its protocol: fixed epochs, best validation epoch), ``smoothed`` otherwise."""
    if stopping == "auto":
        stopping = "raw" if builder == "paper" else "smoothed"
    return CURRENT.get(stopping, stopping)


def compatible(asked: str, recorded: str) -> bool:
    """Whether a config asking for ``asked`` may resume a run that recorded ``recorded``."""
    return asked in ("auto", recorded) or CURRENT.get(asked, "").split("_v")[0] == recorded.split("_v")[0]


def build_rule(rule_id: str, *, epochs: int, patience: int | str | None) -> RawRule:
    """The rule ``rule_id`` (a key of ``RULES``) for a budget of ``epochs``; ``patience``
    is the config's (``auto``, an integer, or None: never stop)."""
    return RULES[rule_id](epochs=epochs, patience=patience)


def replay(rule: RawRule, history: list[dict]) -> None:
    """Rebuild a rule's state from a run's metric rows (checkpoints written before rules
    had a state of their own)."""
    for row in history:
        val = {"acc": row["val/acc"], "loss": row.get("val/loss", float("nan"))} if "val/acc" in row else None
        rule.update(int(row["epoch"]), val)
