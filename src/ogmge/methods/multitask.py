"""The uniform multitask baseline: the fused loss plus each modality head's loss.

Not this project's invention. It is the baseline of Wei & Hu, "MMPareto: Boosting
Multimodal Learning with Innocent Unimodal Assistance", ICML 2024 (released as
GeWu-Lab/MMPareto_ICML2024 ``code/uniform_baseline.py:79``, ``loss = loss_mm +
loss_a + loss_v``, with one linear head per encoder, ``code/models/models.py:154-156``),
and the older idea of auxiliary (deeply supervised) losses on intermediate
representations (e.g. Lee, Xie, Gallagher, Zhang, Tu, "Deeply-Supervised Nets",
AISTATS 2015; per-modality auxiliary heads in multimodal networks, e.g. the
unimodal heads of Wang, Tran, Feiszli, CVPR 2020, trained with constant weights).
Beside the fusion head, every modality u has a linear head on its encoder's
features, trained with the encoder; the loss is

    L = CE(fused) + head_weight * sum_u CE(head_u)

with ``head_weight = 1`` (uniform: the released baseline). Each encoder therefore
always receives the gradient of its own unimodal problem, whatever the fused loss
does; nothing is slowed down.

Its prediction is the fusion head's by default; the ``stacked`` prediction rule
(:mod:`ogmge.methods.stacked`, this project's) pools the fused and the modality
heads on validation. ``anchored`` is the name this pair had here before
(:class:`~ogmge.methods.AnchoredFusion`).

In a plain loop (a model with ``heads=True``)::

    mt = Multitask(["audio", "visual"])
    out = model(x)
    total, terms = mt.loss(out.logits, y, head_logits=out.head_logits)
    opt.zero_grad(); total.backward(); opt.step()
"""

from __future__ import annotations

from torch import Tensor

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, check_modalities, head_loss_terms
from .registry import Option, Space, register


@register
class Multitask(BalancingMethod):
    """Uniform multitask baseline (MMPareto's ``uniform_baseline.py``; module docstring).

    ``modalities``: two or more names. Keyword-only: ``head_weight`` (> 0, the weight
    of each modality head's loss; 1 as released).
    """

    name = "multitask"
    paper = ("Wei & Hu, 'MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance', ICML 2024 "
             "(its uniform baseline); earlier: auxiliary per-branch losses (Lee et al., 'Deeply-Supervised Nets', "
             "AISTATS 2015)")
    options = (
        Option("head_weight", float, 1.0, "weight of each modality head's loss beside the fused loss", low=0.0,
               low_open=True, source="GeWu-Lab/MMPareto_ICML2024 code/uniform_baseline.py:79 (loss_mm + loss_a + "
               "loss_v)", space=Space.log_uniform(0.1, 10.0), legacy_key="multitask_weight"),
    )
    needs_heads = True
    #: "blend": the stacked pool of the fused and the modality heads (ogmge.methods.stacked)
    predictions: tuple[str, ...] = ("fused", "blend")
    min_modalities = 2
    tie_rank = 4.5
    authors_schedule = {"optimizer": "sgd", "lr": 2e-3, "epochs": 50, "batch_size": 64, "lr_decay": "x0.1 at epoch 30",
                        "weight_decay": 1e-4, "source": "GeWu-Lab/MMPareto_ICML2024 code/uniform_baseline.py:27-32, 173"}

    @classmethod
    def build(cls, ctx, **options) -> Multitask:
        return cls(ctx.modalities, **cls.resolve_options(options))

    def __init__(self, modalities, *, head_weight: float = 1.0) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.head_weight = check_number("head_weight", head_weight, lo=0.0, lo_open=True)

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``CE(fused) + head_weight * sum_u CE(head_u)``; terms keyed by head."""
        terms = head_loss_terms(f"method {self.name!r}", self.modalities, logits, labels, head_logits, sample_keep)
        heads = terms[self.modalities[0]]
        for n in self.modalities[1:]:
            heads = heads + terms[n]
        return terms[FUSED] + self.head_weight * heads, terms

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modalities={list(self.modalities)}, head_weight={self.head_weight})"
