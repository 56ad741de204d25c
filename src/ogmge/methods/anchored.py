"""Anchored fusion: this project's balancing setting that does not lose (docs/methods.md).

No anchor paper: designed here (issue "a balancing setting of our own"). Two parts.

1. **Unimodal anchors in training.** Beside the fusion head, every modality u has
   a linear head on its encoder's features; the loss is

       L = CE(fused) + anchor_weight * sum_u CE(head_u)

   with fixed weights. Each encoder therefore always receives the gradient of its
   own unimodal problem, whatever the fused loss does: a modality the fused head
   ignores (the imbalance OGM-GE is about) still learns, as it would alone, and its
   features reach the fusion head discriminative. Nothing is slowed down, so the
   dominant modality never loses what it knows (OGM-GE's failure where the weak
   modality carries nothing that transfers).
2. **A prediction fitted on validation.** The prediction is the blend

       sum_m w_m * log_softmax(o_m),   m in ("fused", *modalities)

   with ``w`` on the simplex minimising the validation split's negative
   log-likelihood (the convex fit of :func:`~ogmge.methods.fit_simplex_weights`,
   refitted at each evaluation). The vertices of the simplex are the fused head
   alone and each modality's head alone, so on the data it is fitted on the blend
   is never worse (in NLL) than the fused model or the best unimodal head; on new
   data it is as good as validation is representative. Selection scores are
   cross-fitted (fit on one half of validation, score on the other).

Why it cannot run away: the loss weights are constants (no feedback from the
measured imbalance into the objective, unlike OGM-GE's coefficients or
G-Blending's weights), and the only fitted quantity is a convex problem over N + 1
numbers on held-out data, whose optimum includes every single member.

In a plain loop (a model with ``heads=True, prediction="blend"``)::

    af = AnchoredFusion(["audio", "visual"])
    for x, y in loader:
        out = model(x)                                   # training mode: logits = fused head
        total, _ = af.loss(out.logits, y, head_logits=out.head_logits)
        opt.zero_grad(); total.backward(); opt.step()
    model.eval(); val = model(x_val)                     # val.fused_logits, val.head_logits
    w = af.fit_prediction(head_logits={"fused": val.fused_logits, **val.head_logits}, labels=y_val)
    model.set_ensemble_weights(w)                        # model(x).logits is now the blend
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ogmge.validation import check_number, check_positive_int

from .base import FUSED, BalancingMethod, check_modalities, head_loss_terms
from .registry import Option, Space, register
from .uni_ensemble import ensemble_logits, fit_simplex_weights


@register
class AnchoredFusion(BalancingMethod):
    """Anchored fusion: fused loss plus fixed unimodal head losses, a blend of all heads fitted on validation.

    ``modalities``: two or more names. Keyword-only: ``anchor_weight`` (> 0, the
    weight of each unimodal head's loss; default 1), ``max_steps`` (>= 1) and
    ``tol`` (> 0) of the weight fit.
    """

    name = "anchored"
    paper = ("none: this project's setting; the loss is MMPareto's uniform multitask baseline (Wei & Hu, ICML 2024) "
             "plus a stacked prediction")
    options = (
        Option("anchor_weight", float, 1.0, "weight of each unimodal head's loss beside the fused loss", low=0.0,
               low_open=True, source="this project (docs/methods.md)", space=Space.log_uniform(0.1, 10.0),
               legacy_key="anchored_weight"),
    )
    needs_heads = True
    predictions = ("blend",)
    min_modalities = 2
    fits_on_validation = True
    cross_fit = "swap"
    tie_rank = 8.0

    @classmethod
    def build(cls, ctx, **options) -> AnchoredFusion:
        return cls(ctx.modalities, **cls.resolve_options(options))

    def __init__(self, modalities, *, anchor_weight: float = 1.0, max_steps: int = 500, tol: float = 1e-10) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.anchor_weight = check_number("anchor_weight", anchor_weight, lo=0.0, lo_open=True)
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.tol = check_number("tol", tol, lo=0.0, lo_open=True)
        self.weights = torch.full((len(self.members),), 1.0 / len(self.members), dtype=torch.float64)

    @property
    def members(self) -> tuple[str, ...]:
        """The blend's members in weight order: ``("fused", *modalities)``."""
        return (FUSED, *self.modalities)

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``CE(fused) + anchor_weight * sum_u CE(head_u)``; terms keyed by head."""
        terms = head_loss_terms("anchored fusion", self.modalities, logits, labels, head_logits, sample_keep)
        anchors = None
        for n in self.modalities:
            anchors = terms[n] if anchors is None else anchors + terms[n]
        assert anchors is not None  # check_modalities: two or more
        return terms[FUSED] + self.anchor_weight * anchors, terms

    def fit_prediction(self, *, head_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Fit ``w`` on held-out outputs ``{"fused": ..., modality: ...}`` (every member needed)."""
        missing = [m for m in self.members if m not in head_logits]
        if missing:
            raise ValueError(f"anchored fusion's fit needs the held-out logits of {list(self.members)}; "
                             f"missing {missing}")
        self.weights = fit_simplex_weights(head_logits, labels, self.members, max_steps=self.max_steps,
                                           tol=self.tol)
        return self.weights

    def predict(self, head_logits: Mapping[str, Tensor]) -> Tensor:
        """The blend's logits ``sum_m w_m log_softmax(o_m)`` over ``members``."""
        return ensemble_logits(head_logits, self.weights, self.members)

    def state_dict(self) -> dict:
        """The members only: the trainer keeps the fitted weights in the model's combiner
        (``model.combiner``); ``self.weights`` is for plain loops."""
        return {"members": list(self.members)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("members", [])) != list(self.members):
            raise ValueError(f"anchored fusion state is for {state.get('members')}, this one has {list(self.members)}")
        if "weights" in state:  # written before the combiner held them
            self.weights = torch.as_tensor(state["weights"], dtype=torch.float64).clone()


    def __repr__(self) -> str:
        return f"AnchoredFusion(modalities={list(self.modalities)}, anchor_weight={self.anchor_weight})"
