"""Gradient-Blending, online variant.

Wang, Tran, Feiszli, "What Makes Training Multi-Modal Classification Networks
Hard?", CVPR 2020. Beside the fusion head, a linear head per modality on its
encoder's features (trained with the encoder, not detached); the loss is
``sum_h w_h * CE_h`` over the fused head and every unimodal head. Per head h
over an interval of training, with ``O = L_val - L_train`` (overfitting):

    dG = L_val(start) - L_val(end)          (generalisation gained)
    dO = O(end) - O(start)                  (overfitting gained)
    w_h  proportional to  dG / dO**2, normalised to sum to 1.

The paper estimates from heads trained *alone* for the interval. This module is
the documented **online** variant (DESIGN §7): it estimates from the blended
run's own per-head losses, every ``super_epoch`` epochs. Choices made here:

- ``L_train`` is the epoch's running mean of the per-head training losses
  (free: the loop computes those terms anyway), i.e. the mean over the last
  epoch of the interval; ``L_val`` is an evaluation pass over the validation
  split (never the test split). The start of the first interval is measured on
  the initial model (``begin``); without it, the first interval only sets the
  start.
- a head whose ``dG <= 0`` gets raw weight 0 (before the floor); when every
  ``dG <= 0`` the previous weights are kept (fallback);
- guard: ``dO**2`` is replaced by ``max(dO**2, delta_o_min**2)``, so an interval
  without measurable overfitting does not give an unbounded weight;
- floor: every weight is at least ``w_min``; heads below it are set to ``w_min``
  and the others share the rest in proportion to their raw weights (repeated
  until none is below), so the weights still sum to 1 and no head is switched
  off for good.

Usage in a plain loop (the model returns ``logits`` and ``head_logits``)::

    gb = GBlending(["audio", "visual"], super_epoch=2, w_min=0.05)
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

from torch import Tensor

from ogmge.validation import check_number, check_positive_int

from .base import FUSED, BalancingMethod, check_modalities, head_loss_terms
from .registry import Option, Space, register


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
    """G-Blending: per-head loss weights from each head's generalisation/overfitting trade-off (online variant).

    ``modalities``: names of the unimodal heads (two or more); heads are
    ``"fused"`` plus these. Keyword-only: ``super_epoch`` (epochs per estimate,
    >= 1), ``w_min`` (floor, ``0 <= w_min <= 1/heads``), ``delta_o_min`` (guard on
    ``dO``, > 0), ``weights`` (initial weights per head; default uniform).
    """

    name = "gblend"
    paper = "Wang, Tran, Feiszli, 'What Makes Training Multi-Modal Classification Networks Hard?', CVPR 2020"
    options = (
        Option("super_epoch", int, 2, "epochs between two estimates of the blending weights", low=1,
               source="this project's online variant (docs/methods.md)", space=Space.int_range(1, 5),
               legacy_key="gblend_super_epoch"),
        Option("w_min", float, 0.05, "floor of every head's weight (at most 1/heads)", low=0.0, high=1.0,
               source="this project's online variant (docs/methods.md)", space=Space.uniform(0.0, 0.2),
               legacy_key="gblend_w_min"),
        Option("delta_o_min", float, 0.01, "guard: dO**2 is at least delta_o_min**2", low=0.0, low_open=True,
               source="this project's online variant (docs/methods.md)", space=Space.log_uniform(1e-3, 1e-1),
               legacy_key="gblend_delta_o_min"),
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
        super_epoch: int = 2,
        w_min: float = 0.05,
        delta_o_min: float = 1e-2,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.modalities = check_modalities("modalities", modalities)
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

    def begin(self, *, train_losses=None, val_losses=None) -> None:
        """The initial model's per-head losses: the first interval's start."""
        if train_losses is None or val_losses is None:
            return
        self.start = self._point(train_losses, val_losses)
        self.epochs_in_interval = 0

    def end_epoch(self, epoch: int, *, train_losses=None, val_losses=None) -> None:
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
        return (f"GBlending(modalities={list(self.modalities)}, super_epoch={self.super_epoch}, "
                f"w_min={self.w_min}, delta_o_min={self.delta_o_min}, weights={self.weights})")
