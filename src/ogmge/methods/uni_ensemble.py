"""Unimodal ensemble: each encoder with its own head, trained alone, then combined.

Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, "On Uni-Modal Feature Learning in
Supervised Multi-Modal Learning", ICML 2023 (arXiv 2305.01233; its Uni-Modal
Ensemble, UME). The prediction is the ``stacked`` rule over the modality heads only
(there is no trained fusion head). One run:
every modality u has a linear head on its encoder's features; the loss is
``sum_u CE_u`` and there is **no fused loss**, so each encoder (and its head)
receives exactly the gradient it would get if trained alone on the same batches.
The prediction is ``sum_u w_u * log_softmax(o_u)`` with ``w`` on the simplex
minimising the negative log-likelihood of ``softmax(sum_u w_u log_softmax(o_u))``
on the validation split — convex in ``w`` (log-sum-exp of an affine map minus an
affine map). The fit (:func:`fit_simplex_weights`) is projected gradient descent
with backtracking in float64 from equal weights, so it is deterministic; without
validation data the weights stay equal. Refit at each evaluation.

In a plain loop (the model returns ``head_logits``)::

    ue = UnimodalEnsemble(["audio", "visual"])
    for x, y in loader:
        out = model(x)
        total, _ = ue.loss(out.logits, y, head_logits=out.head_logits)
        opt.zero_grad(); total.backward(); opt.step()
    w = ue.fit_prediction(head_logits=val_head_logits, labels=val_labels)
    prediction = ue.predict(test_head_logits).argmax(1)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ogmge.combination import ensemble_logits, ensemble_nll, fit_simplex_weights, project_simplex
from ogmge.validation import check_number, check_positive_int

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy, require_head_logits
from .registry import register


@register
class UnimodalEnsemble(BalancingMethod):
    """Unimodal ensemble: each encoder trained alone with its own head, combined by weights fitted on validation.

    ``modalities``: two or more names. Keyword-only: ``max_steps`` (>= 1) and
    ``tol`` (> 0) of the weight fit.
    """

    name = "uni_ensemble"
    paper = ("Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, 'On Uni-Modal Feature Learning in Supervised Multi-Modal "
             "Learning', ICML 2023 (its Uni-Modal Ensemble)")
    needs_heads = True
    predictions = ("ensemble",)  # the stacked pool over the modality heads only
    min_modalities = 2
    fits_on_validation = True
    cross_fit = "swap"
    tie_rank = 6.0

    @classmethod
    def build(cls, ctx, **options) -> UnimodalEnsemble:
        return cls(ctx.modalities, **cls.resolve_options(options))

    def __init__(self, modalities, *, max_steps: int = 500, tol: float = 1e-10) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.tol = check_number("tol", tol, lo=0.0, lo_open=True)
        self.weights = torch.full((len(self.modalities),), 1.0 / len(self.modalities), dtype=torch.float64)

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``sum_u CE_u``; the fused head's CE is reported (detached), not trained."""
        head_logits = require_head_logits("the unimodal ensemble", self.modalities, head_logits)
        terms = {n: cross_entropy(head_logits[n], labels) for n in self.modalities}
        total = sum(terms.values())
        terms[FUSED] = cross_entropy(logits, labels, sample_keep).detach()
        return total, terms

    def fit_prediction(self, *, head_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        self.weights = fit_simplex_weights(head_logits, labels, self.modalities, max_steps=self.max_steps,
                                           tol=self.tol)
        return self.weights

    def predict(self, head_logits: Mapping[str, Tensor]) -> Tensor:
        """The ensemble's logits ``sum_u w_u log_softmax(o_u)``."""
        return ensemble_logits(head_logits, self.weights, self.modalities)

    def state_dict(self) -> dict:
        """The modalities only: the trainer keeps the fitted weights in the model's combiner
        (``model.combiner``); ``self.weights`` is for plain loops."""
        return {"modalities": list(self.modalities)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"ensemble state is for {state.get('modalities')}, this one has {list(self.modalities)}")
        if "weights" in state:  # written before the combiner held them
            self.weights = torch.as_tensor(state["weights"], dtype=torch.float64).clone()


    def __repr__(self) -> str:
        return f"UnimodalEnsemble(modalities={list(self.modalities)})"


__all__ = ["UnimodalEnsemble", "ensemble_logits", "ensemble_nll", "fit_simplex_weights", "project_simplex"]
