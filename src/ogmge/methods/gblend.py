"""Gradient-Blending (G-Blending), as published, and an online variant.

Wang, Tran, Feiszli, "What Makes Training Multi-Modal Classification Networks
Hard?", CVPR 2020. Beside the fusion head, a linear head per modality on its
encoder's features (trained with the encoder, not detached); the loss is
``sum_h w_h * CE_h`` over the fused head and every unimodal head. Per head h
over an interval of training, with ``O = L_val - L_train`` (overfitting):

    dG = L_val(start) - L_val(end)          (generalisation gained)
    dO = O(end) - O(start)                  (overfitting gained)
    w_h  proportional to  dG / dO**2, normalised to sum to 1  (Eq. 6, Alg. 1)

``estimate="paper"`` (default; the paper's Algorithm 1 and BalanceBenchmark's
``GBlending_trainer.py:super_epoch_origin``): at the start of every
``super_epoch``-th epoch, from the current weights, a **copy** of the model is
trained per head (each modality's head on its encoder, and the fused model) for
``super_epoch`` epochs on the training split with that head's loss alone and a
fresh optimiser at the run's current learning rate; the start and end of the
interval are evaluation passes over the training split (``L_train``) and over the
held-out validation half A (``L_val``; the test split never). The blended model
then trains with the new weights. Cost: ``(N + 1) * super_epoch`` extra training
epochs per estimate, i.e. about ``N + 1`` extra runs' worth of training over a
whole run, plus ``N + 2`` evaluation passes of both splits per estimate.

``estimate="online"`` (this project's earlier variant, kept for run directories
made with it): the heads being trained with the current weights are measured on
the blended run's own per-head losses (the epoch's running training means and a
validation pass) every ``super_epoch`` epochs; the first interval starts on the
initial model (``begin``). It has a feedback loop the paper does not (a head with
a small weight learns slowly, gets a small dG, gets a smaller weight).

Guards, only where the paper leaves a case undefined:

- ``dG <= 0`` (the held-out loss did not fall): the ratio would give the head a
  zero or negative weight; the head gets raw weight 0 (a negative weight is not a
  blending weight);
- every ``dG <= 0``: there is nothing to normalise; the previous weights are kept
  (also for non-finite losses);
- ``dO**2 < delta_o_min**2`` (default 1e-6, i.e. 1e-12): the ratio divides by ~0;
  ``dO**2`` is replaced by ``delta_o_min**2`` so the head takes (nearly) all the
  weight instead of an overflow;
- ``w_min`` (default 0, off): an optional floor, not in the paper.

Usage of the online estimator in a plain loop (the model returns ``logits`` and ``head_logits``)::

    gb = GBlending(["audio", "visual"], estimate="online", super_epoch=2)
    gb.begin(train_losses=..., val_losses=...)            # initial model, per head
    for epoch in range(epochs):
        for x, y in loader:
            out = model(x)
            total, terms = gb.loss(out.logits, y, head_logits=out.head_logits)
            opt.zero_grad(); total.backward(); opt.step()
        gb.end_epoch(epoch, train_losses=mean_terms, val_losses=validation_losses)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from torch import Tensor

from ogmge.validation import check_number, check_positive_int

from .base import FUSED, BalancingMethod, check_modalities, head_loss_terms
from .registry import Option, Space, register

#: How the weights are estimated: copies trained per head (the paper) or the run's own losses.
ESTIMATORS = ("paper", "online")


class CopyTraining(Protocol):
    """What the trainer gives :meth:`GBlending.estimate_from_copies` (the paper's estimator).

    ``clone()``: a copy of the current model with a fresh optimiser (opaque to the
    method); ``train_epoch(copy, head)``: one epoch of the copy on the training split
    with head ``head``'s cross-entropy alone; ``losses(copy, split)``: mean per-head
    losses ``{head: float}`` of ``copy`` (None: the current model) on ``"train"`` or
    ``"heldout"`` (validation half A)."""

    def clone(self) -> Any: ...

    def train_epoch(self, copy: Any, head: str) -> None: ...

    def losses(self, copy: Any, split: str) -> Mapping[str, float]: ...


def floor_weights(weights: Mapping[str, float], w_min: float) -> dict[str, float]:
    """Weights summing to 1 with each at least ``w_min`` (``len(weights) * w_min <= 1``).

    Heads below the floor get exactly ``w_min``; the rest of the mass is shared by
    the others in proportion to ``weights``; repeated until no head is below."""
    fixed: set[str] = set()
    while True:
        free = [h for h in weights if h not in fixed]
        if not free:
            return {h: w_min for h in weights}
        mass = 1.0 - w_min * len(fixed)
        total = sum(weights[h] for h in free)
        if total <= 0:
            share = {h: mass / len(free) for h in free}
        else:
            share = {h: mass * weights[h] / total for h in free}
        low = [h for h in free if share[h] < w_min]
        if not low:
            return {h: (w_min if h in fixed else share[h]) for h in weights}
        fixed.update(low)


def blending_weights(
    start: Mapping[str, tuple[float, float]],
    end: Mapping[str, tuple[float, float]],
    previous: Mapping[str, float],
    *,
    w_min: float = 0.0,
    delta_o_min: float = 1e-2,
) -> tuple[dict[str, float], dict[str, dict[str, float]], bool]:
    """One estimate. ``start``/``end``: ``{head: (L_train, L_val)}``.

    Returns ``(weights, per-head {"dG", "dO", "raw"}, fallback)``; pure, in float64. The
    fallback (previous weights kept) also covers a non-finite loss (e.g. an empty half)."""
    info: dict[str, dict[str, float]] = {}
    raw: dict[str, float] = {}
    for h in previous:
        (t0, v0), (t1, v1) = start[h], end[h]
        d_g = float(v0) - float(v1)
        d_o = (float(v1) - float(t1)) - (float(v0) - float(t0))
        value = max(d_g, 0.0) / max(d_o * d_o, delta_o_min * delta_o_min)
        raw[h] = value
        info[h] = {"dG": d_g, "dO": d_o, "raw": value}
    if not all(math.isfinite(v) for v in raw.values()) or all(info[h]["dG"] <= 0 for h in previous):
        return dict(previous), info, True  # nothing learnt, or losses not measurable: keep the weights
    total = sum(raw.values())
    normalised = {h: raw[h] / total for h in raw}
    return floor_weights(normalised, w_min), info, False


@register
class GBlending(BalancingMethod):
    """G-Blending: head weights w ∝ dG/dO² from copies trained per head; cost (N+1) x super_epoch epochs per estimate.

    ``modalities``: names of the unimodal heads (two or more); heads are
    ``"fused"`` plus these. Keyword-only: ``estimate`` (``"paper"``: copies per head;
    ``"online"``), ``super_epoch`` (epochs per estimate, >= 1), ``w_min`` (floor,
    ``0 <= w_min <= 1/heads``), ``delta_o_min`` (guard on ``dO``, > 0), ``weights``
    (initial weights per head; default uniform).
    """

    name = "gblend"
    paper = "Wang, Tran, Feiszli, 'What Makes Training Multi-Modal Classification Networks Hard?', CVPR 2020"
    options = (
        Option("estimate", str, "paper", "paper: copies trained per head for a super-epoch (Alg. 1); online: "
               "this project's earlier estimate from the run's own losses", choices=ESTIMATORS,
               source="Wang et al., CVPR 2020, Alg. 1; BalanceBenchmark GBlending_trainer.py (super_epoch_origin)",
               legacy_key="gblend_estimate"),
        Option("super_epoch", int, 10, "epochs per estimate (and epochs each copy trains)", low=1,
               source="BalanceBenchmark configs/trainer_config.yaml:38 (super_epoch 10 over 30 epochs)",
               space=Space.int_range(1, 10), legacy_key="gblend_super_epoch"),
        Option("w_min", float, 0.0, "floor of every head's weight (at most 1/heads; 0: none, as in the paper)",
               low=0.0, high=1.0, source="Wang et al., CVPR 2020 (no floor)", space=Space.uniform(0.0, 0.2),
               legacy_key="gblend_w_min"),
        Option("delta_o_min", float, 1e-6, "guard where the paper divides by ~0: dO**2 >= delta_o_min**2",
               low=0.0, low_open=True, source="this project (a guard, not in the paper)",
               space=Space.log_uniform(1e-6, 1e-1), legacy_key="gblend_delta_o_min"),
    )
    needs_heads = True
    min_modalities = 2
    fits_on_validation = True
    cross_fit = "split"
    tie_rank = 5.0
    needs_validation = True
    wants_initial_losses = True

    @classmethod
    def build(cls, ctx, **options) -> GBlending:
        return cls(ctx.modalities, **cls.resolve_options(options))

    def __init__(
        self,
        modalities,
        *,
        estimate: str = "paper",
        super_epoch: int = 10,
        w_min: float = 0.0,
        delta_o_min: float = 1e-6,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if estimate not in ESTIMATORS:
            raise ValueError(f"estimate must be one of {list(ESTIMATORS)}, got {estimate!r}")
        self.estimator = estimate
        #: the paper's estimator: the trainer calls :meth:`estimate_from_copies` before each epoch
        self.trains_copies = estimate == "paper"
        self.wants_initial_losses = estimate == "online"
        self.heads = (FUSED, *self.modalities)
        self.super_epoch = check_positive_int("super_epoch", super_epoch)
        self.w_min = check_number("w_min", w_min, lo=0.0, hi=1.0 / len(self.heads))
        self.delta_o_min = check_number("delta_o_min", delta_o_min, lo=0.0, lo_open=True)
        if weights is None:
            self.weights = {h: 1.0 / len(self.heads) for h in self.heads}
        else:
            if not isinstance(weights, Mapping) or set(weights) != set(self.heads):
                raise ValueError(f"weights must give one weight per head {list(self.heads)}, got {weights!r}")
            values = {h: check_number(f"weights[{h!r}]", weights[h], lo=0.0) for h in self.heads}
            if sum(values.values()) <= 0:
                raise ValueError(f"weights must not all be 0, got {weights!r}")
            self.weights = floor_weights({h: v / sum(values.values()) for h, v in values.items()}, self.w_min)
        self.start: dict[str, tuple[float, float]] | None = None
        self.epochs_in_interval = 0
        self.estimates = 0
        self.last: dict = {}

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``sum_h w_h * CE_h`` over the fused head and every unimodal head."""
        terms = head_loss_terms("G-Blending", self.modalities, logits, labels, head_logits, sample_keep)
        total = sum(self.weights[h] * terms[h] for h in self.heads)
        return total, terms

    def _point(self, train_losses, val_losses) -> dict[str, tuple[float, float]]:
        for what, losses in (("train_losses", train_losses), ("val_losses", val_losses)):
            if not isinstance(losses, Mapping) or not set(self.heads) <= set(losses):
                raise ValueError(f"G-Blending needs {what} for every head {list(self.heads)}, got {losses!r}")
        return {h: (float(train_losses[h]), float(val_losses[h])) for h in self.heads}

    def estimate_from_copies(self, epoch: int, copies: CopyTraining) -> None:
        """Alg. 1: at every ``super_epoch``-th epoch, one copy per head trained for ``super_epoch``
        epochs from the current weights; ``w ∝ dG / dO**2`` from their train/held-out losses."""
        if not self.trains_copies or epoch % self.super_epoch:
            return
        start_train, start_val = copies.losses(None, "train"), copies.losses(None, "heldout")
        start = {h: (float(start_train[h]), float(start_val[h])) for h in self.heads}
        end = {}
        for h in self.heads:
            copy = copies.clone()
            for _ in range(self.super_epoch):
                copies.train_epoch(copy, h)
            end[h] = (float(copies.losses(copy, "train")[h]), float(copies.losses(copy, "heldout")[h]))
            del copy
        self.weights, info, fallback = blending_weights(start, end, self.weights, w_min=self.w_min,
                                                        delta_o_min=self.delta_o_min)
        self.last = {"epoch": epoch, "fallback": fallback, "info": info, "start": start, "end": end}
        self.estimates += 1

    def begin(self, *, train_losses=None, val_losses=None) -> None:
        """The initial model's per-head losses: the first interval's start (online estimator)."""
        if train_losses is None or val_losses is None or self.trains_copies:
            return
        self.start = self._point(train_losses, val_losses)
        self.epochs_in_interval = 0

    def end_epoch(self, epoch: int, *, train_losses=None, val_losses=None) -> None:
        if self.trains_copies:
            return
        if val_losses is None or train_losses is None:
            self.last = {"skipped": "no validation losses"}
            return
        point = self._point(train_losses, val_losses)
        if self.start is None:  # the initial model was not measured: this epoch starts the interval
            self.start, self.epochs_in_interval = point, 0
            return
        self.epochs_in_interval += 1
        if self.epochs_in_interval < self.super_epoch:
            return
        weights, info, fallback = blending_weights(
            self.start, point, self.weights, w_min=self.w_min, delta_o_min=self.delta_o_min
        )
        self.weights = weights
        self.last = {"epoch": epoch, "fallback": fallback, "info": info}
        self.estimates += 1
        self.start, self.epochs_in_interval = point, 0

    def state_dict(self) -> dict:
        return {
            "weights": dict(self.weights),
            "start": None if self.start is None else {h: list(v) for h, v in self.start.items()},
            "epochs_in_interval": self.epochs_in_interval,
            "estimates": self.estimates,
            "heads": list(self.heads),
            "estimator": self.estimator,
            "last": dict(self.last),
        }

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("heads", [])) != list(self.heads):
            raise ValueError(f"G-Blending state is for heads {state.get('heads')}, this one has {list(self.heads)}")
        self.weights = {h: float(state["weights"][h]) for h in self.heads}
        start = state.get("start")
        self.start = None if start is None else {h: (float(start[h][0]), float(start[h][1])) for h in self.heads}
        self.epochs_in_interval = int(state["epochs_in_interval"])
        self.estimates = int(state["estimates"])
        self.last = dict(state.get("last", {}))

    def trace_row(self) -> dict[str, float]:
        row = {f"gblend_w/{h}": w for h, w in self.weights.items()}
        if self.last.get("info"):
            row["gblend_fallback"] = float(self.last["fallback"])
            for h, v in self.last["info"].items():
                row[f"gblend_dG/{h}"] = v["dG"]
                row[f"gblend_dO/{h}"] = v["dO"]
        return row

    def __repr__(self) -> str:
        return (f"GBlending(modalities={list(self.modalities)}, estimator={self.estimator!r}, "
                f"super_epoch={self.super_epoch}, "
                f"w_min={self.w_min}, delta_o_min={self.delta_o_min}, weights={self.weights})")
