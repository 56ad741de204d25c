"""``anchored``: the name kept for the pair ``multitask`` + ``stacked`` (docs/methods.md).

Earlier versions of this project presented "anchored fusion" as a setting of its
own. Its two parts are not new and are credited where they come from:

1. training: the uniform multitask baseline, ``CE(fused) + w * sum_u CE(head_u)``
   (:class:`~ogmge.methods.Multitask`; MMPareto's ``uniform_baseline.py``, ICML 2024,
   and earlier auxiliary-loss work);
2. prediction: the ``stacked`` rule (:class:`~ogmge.methods.StackedPrediction`), a
   validation-fitted log-linear pool of the fused and the modality heads, with its
   selection score cross-fitted. What is this project's is offering that pool as a
   selectable head combiner for every method with heads, the protocol that selects
   it without touching the test split, and the compare verdict.

``anchored`` stays accepted (configs, run directories, ``--method anchored``) and
means exactly ``multitask`` with ``stacked`` prediction; ``compare --methods anchored``
trains ``multitask`` once and reports its ``multitask+stacked`` row (``alias_of``).

In a plain loop (a model with ``heads=True, prediction="blend"``)::

    af = AnchoredFusion(["audio", "visual"])
    for x, y in loader:
        out = model(x)                                   # training mode: logits = fused head
        total, _ = af.loss(out.logits, y, head_logits=out.head_logits)
        opt.zero_grad(); total.backward(); opt.step()
    model.eval(); val = model(x_val)                     # val.fused_logits, val.head_logits
    w = af.fit_prediction(head_logits={"fused": val.fused_logits, **val.head_logits}, labels=y_val)
    model.set_ensemble_weights(w)                        # model(x).logits is now the pool
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ogmge.validation import check_number

from .multitask import Multitask
from .registry import Option, Space, register
from .stacked import StackedPrediction


@register
class AnchoredFusion(Multitask):
    """``multitask`` trained, ``stacked`` predicted (module docstring).

    ``modalities``: two or more names. Keyword-only: ``anchor_weight`` (> 0, the
    multitask ``head_weight``; default 1), ``max_steps`` (>= 1) and ``tol`` (> 0) of the fit.
    """

    name = "anchored"
    paper = ("not a method of its own: the alias of multitask (MMPareto's uniform baseline, Wei & Hu, ICML 2024) "
             "with the stacked prediction (this project's head combiner)")
    options = (
        Option("anchor_weight", float, 1.0, "weight of each modality head's loss beside the fused loss (multitask)",
               low=0.0, low_open=True, source="GeWu-Lab/MMPareto_ICML2024 code/uniform_baseline.py:79 (weights 1)",
               space=Space.log_uniform(0.1, 10.0), legacy_key="anchored_weight"),
    )
    predictions = ("blend",)  # the stacked pool over the fused and the modality heads
    alias_of = ("multitask", "blend")  # compare: one multitask run, its multitask+stacked row
    fits_on_validation = True
    cross_fit = "swap"
    tie_rank = 8.0

    @classmethod
    def build(cls, ctx, **options) -> AnchoredFusion:
        return cls(ctx.modalities, **cls.resolve_options(options))

    def __init__(self, modalities, *, anchor_weight: float = 1.0, max_steps: int = 500, tol: float = 1e-10) -> None:
        super().__init__(modalities, head_weight=check_number("anchor_weight", anchor_weight, lo=0.0, lo_open=True))
        self.anchor_weight = self.head_weight
        self.stacked = StackedPrediction(self.modalities, with_fused=True, max_steps=max_steps, tol=tol)

    @property
    def members(self) -> tuple[str, ...]:
        """The pool's members in weight order: ``("fused", *modalities)``."""
        return self.stacked.members

    @property
    def weights(self) -> Tensor:
        return self.stacked.weights

    @weights.setter
    def weights(self, value: Tensor) -> None:
        self.stacked.weights = value

    def fit_prediction(self, *, head_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Fit ``w`` on held-out outputs ``{"fused": ..., modality: ...}`` (every member needed)."""
        return self.stacked.fit(head_logits, labels)

    def predict(self, head_logits: Mapping[str, Tensor]) -> Tensor:
        """The pool's logits ``sum_m w_m log_softmax(o_m)`` over ``members``."""
        return self.stacked.predict(head_logits)

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
