"""Attention fusion: a small Transformer encoder (Vaswani et al., "Attention Is All
You Need", NeurIPS 2017) over one token per modality -- its projected features
plus a learned modality embedding -- and a classification token whose output
feeds a linear classifier (the [CLS] read-out of Devlin et al., BERT, 2019).
Beyond the OGM-GE paper; its per-modality logits come from an estimator.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ...validation import check_number, check_positive_int
from .base import FusionHead


class AttentionFusion(FusionHead):
    """Transformer fusion for any N modalities; no dropout by default, so that the
    estimators' re-runs of the head are deterministic."""

    def __init__(
        self,
        in_dims: Mapping[str, int],
        num_classes: int,
        *,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, num_classes)
        for field, value in (("d_model", d_model), ("heads", heads), ("layers", layers)):
            check_positive_int(field, value)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        check_number("dropout", dropout, lo=0, hi=1, hi_open=True)
        self.proj = nn.ModuleDict({n: nn.Linear(d, d_model) for n, d in self.in_dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), d_model) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=float(dropout), batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.fc_out = nn.Linear(d_model, self.num_classes)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        self._check(features)
        tokens = torch.stack([self.proj[n](features[n]) for n in self.modalities], dim=1)
        tokens = tokens + self.modality_embedding
        cls = self.cls_token.expand(tokens.shape[0], 1, -1)
        out = self.encoder(torch.cat([cls, tokens], dim=1))
        return self.fc_out(self.norm(out[:, 0]))
