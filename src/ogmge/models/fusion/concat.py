"""Concatenation fusion, the paper's main head (Peng et al., CVPR 2022, Sec. 3.2).

``out = W [phi_1; ...; phi_N] + b``; with ``W = [W_1 ... W_N]`` the linear split
(DESIGN §2.1) gives ``o_u = W_u phi_u + b / N``, one rule for training and
evaluation, and ``sum_u o_u = out`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import FusionHead


class ConcatFusion(FusionHead):
    """Linear classifier on the concatenated features of any N modalities."""

    default_estimator = "linear"
    supports_linear_split = True

    def __init__(self, in_dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__(in_dims, num_classes)
        self.fc = nn.Linear(sum(self.in_dims.values()), self.num_classes)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        self._check(features)
        return self.fc(torch.cat([features[n] for n in self.modalities], dim=-1))

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``o_u = W_u phi_u + b / N`` for every modality u."""
        self._check(features)
        out, start = {}, 0
        bias = self.fc.bias / len(self.modalities)
        for name in self.modalities:
            d = self.in_dims[name]
            w = self.fc.weight[:, start : start + d]
            out[name] = features[name] @ w.t() + bias
            start += d
        return out
