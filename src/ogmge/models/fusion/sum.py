"""Sum fusion of the paper (Peng et al., CVPR 2022): ``out = sum_u (W_u phi_u + b_u)``.

Each modality has its own linear layer and bias, so the linear split is
``o_u = W_u phi_u + b_u`` (DESIGN §2.1), the same rule in training and
evaluation (the official code used ``b_u`` and ``b_u / 2`` respectively).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from .base import FusionHead


class SumFusion(FusionHead):
    """Sum of per-modality linear classifiers, for any N modalities."""

    default_estimator = "linear"
    supports_linear_split = True

    def __init__(self, in_dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__(in_dims, num_classes)
        self.fc = nn.ModuleDict({n: nn.Linear(d, self.num_classes) for n, d in self.in_dims.items()})

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        parts = self.linear_split(features)
        out = parts[self.modalities[0]]
        for name in self.modalities[1:]:
            out = out + parts[name]
        return out

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``o_u = W_u phi_u + b_u`` for every modality u."""
        self._check(features)
        return {n: self.fc[n](features[n]) for n in self.modalities}
