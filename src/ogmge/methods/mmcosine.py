"""MMCosine: multi-modal cosine loss.

Xu, Feng, Zhang, Hu, "MMCosine: Multi-Modal Cosine Loss Towards Balanced
Audio-Visual Fine-Grained Learning", ICASSP 2023. The last linear layer's block of
each modality, ``W_u`` (C x D_u), becomes a cosine classifier without bias: with
row-normalised class weights and the L2-normalised feature,

    o_u = s * cos(f_u, W_{u,c}) = s * <f_u / ||f_u||, W_{u,c} / ||W_{u,c}||>,
    logits = sum_u o_u,

trained with cross-entropy on the fused logits and evaluated the same way (the
authors' ``valid`` scores the raw linear layer instead, main_CD.py:196; we do not).
``s`` = 10 (main_CD.py:59). The optional NCE term of the released code has weight 0
there (``--lam``) and is not offered.

A model part, not a training rule: :class:`CosineHead` wraps a concat or sum head
(the last layer linear in per-modality features; N modalities) and replaces its
forward pass; every training method then trains it (``mmcosine`` is plain
cross-entropy with it). Gated, FiLM and attention heads are refused by name (their
last layer is not a sum of per-modality blocks). Its ``linear_split`` is the exact
per-modality ``o_u``, so the per-modality estimates (OGM-GE's scores) are the
cosine logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ogmge.validation import check_number

from .base import BalancingMethod
from .registry import Option, Space, register

#: Fusion heads whose last layer is linear in per-modality features (``linear_split``).
COSINE_HEADS = ("ConcatFusion", "SumFusion")


def cosine_logits(features: Mapping[str, Tensor], weights: Mapping[str, Tensor], scale: float) -> dict[str, Tensor]:
    """``{u: s * normalize(f_u) @ normalize(W_u, rows).T}`` (B, C) per modality."""
    return {u: scale * F.normalize(features[u], dim=-1) @ F.normalize(w, dim=-1).t() for u, w in weights.items()}


class CosineHead(nn.Module):
    """MMCosine's classifier on the weights of a concat or sum ``head`` (kept as a child,
    so checkpoints hold its weights; its bias is unused). ``scale``: ``s`` (> 0)."""

    default_estimator = "linear"
    supports_linear_split = True

    def __init__(self, head: nn.Module, scale: float = 10.0) -> None:
        super().__init__()
        kind = type(head).__name__
        if kind not in COSINE_HEADS:
            raise ValueError(f"MMCosine needs a last layer that is linear in per-modality features (a concat or "
                             f"sum head); {kind} is not, so MMCosine cannot be used with it")
        self.base = head
        self.scale = check_number("scale", scale, lo=0.0, lo_open=True)
        spec: Any = head
        self.in_dims = dict(spec.in_dims)
        self.modalities = tuple(self.in_dims)
        self.num_classes = int(spec.num_classes)
        for p in self._biases():
            p.requires_grad_(False)  # no bias in a cosine classifier

    def _biases(self) -> list[nn.Parameter]:
        base: Any = self.base
        if type(base).__name__ == "SumFusion":
            return [base.fc[u].bias for u in self.modalities]
        return [base.fc.bias]

    def class_weights(self) -> dict[str, Tensor]:
        """``{u: W_u}`` (C, D_u), the modality's block of the last layer."""
        base: Any = self.base
        if type(base).__name__ == "SumFusion":
            return {u: base.fc[u].weight for u in self.modalities}
        out, start = {}, 0
        for u in self.modalities:
            d = self.in_dims[u]
            out[u] = base.fc.weight[:, start:start + d]
            start += d
        return out

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        missing = [u for u in self.modalities if u not in features]
        if missing:
            raise KeyError(f"MMCosine head is missing features for modalities {missing}")
        return cosine_logits(features, self.class_weights(), self.scale)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        parts = self.linear_split(features)
        return torch.stack([parts[u] for u in self.modalities]).sum(0)


@register
class MMCosine(BalancingMethod):
    """MMCosine: per-modality cosine classifiers (no bias) summed, trained and evaluated so.

    Xu et al., ICASSP 2023: plain fused cross-entropy on a model whose head is a
    :class:`CosineHead` (``wrap_fusion``; see the module docstring)."""

    name = "mmcosine"
    paper = ("Xu, Feng, Zhang, Hu, 'MMCosine: Multi-Modal Cosine Loss Towards Balanced Audio-Visual "
             "Fine-Grained Learning', ICASSP 2023")
    options = (
        Option("scale", float, 10.0, "scale s of the cosine logits", low=0.0, low_open=True,
               source="GeWu-Lab/MMCosine_ICASSP23 main_CD.py:59", space=Space.log_uniform(5.0, 30.0),
               legacy_key="mmcosine_scale"),
    )
    tie_rank = 9.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-3, "epochs": 200, "batch_size": 32, "lr_decay": "x0.1 at epoch 100",
                        "weight_decay": 1e-4, "source": "GeWu-Lab/MMCosine_ICASSP23 main_CD.py:60-66, 262"}

    @classmethod
    def build(cls, ctx, **options) -> MMCosine:
        return cls(**cls.resolve_options(options))

    @classmethod
    def wrap_fusion(cls, fusion: nn.Module, **options) -> nn.Module:
        """The model part: the cosine classifier on ``fusion``'s weights (refused by name
        where its last layer is not linear in per-modality features)."""
        return CosineHead(fusion, cls.resolve_options(options)["scale"])

    def __init__(self, scale: float = 10.0) -> None:
        self.scale = check_number("scale", scale, lo=0.0, lo_open=True)

    def __repr__(self) -> str:
        return f"MMCosine(scale={self.scale})"
