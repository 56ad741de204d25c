"""Gated fusion (Kiela, Grave, Joulin, Mikolov, "Efficient Large-Scale Multi-Modal
Classification", AAAI 2018), as used for two modalities in the OGM-GE paper:
``out = W_o (sigmoid(W_g phi_g + b_g) * (W_v phi_v + b_v)) + b_o`` where the
gating modality g multiplies the other modality v.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ...validation import check_positive_int
from .base import FusionHead, choose_pair


class GatedFusion(FusionHead):
    """Gated head for exactly two modalities; ``gate`` names the gating one; ``hidden``
    defaults to the gated modality's feature size.

    Default ``gate``: ``"audio"`` when it is one of the two (audio gates visual, as in the
    official code); with any other names there is no default and ``gate`` must be given
    (a ValueError says so) -- never the first modality by position."""

    def __init__(
        self, in_dims: Mapping[str, int], num_classes: int, *, gate: str | None = None, hidden: int | None = None
    ) -> None:
        super().__init__(in_dims, num_classes, exactly=2)
        self.gate, self.gated = choose_pair("gate", "gating", gate, self.modalities)
        if hidden is None:
            hidden = self.in_dims[self.gated]
        check_positive_int("hidden", hidden)
        self.fc_gate = nn.Linear(self.in_dims[self.gate], hidden)
        self.fc_value = nn.Linear(self.in_dims[self.gated], hidden)
        self.fc_out = nn.Linear(hidden, self.num_classes)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        self._check(features)
        g = torch.sigmoid(self.fc_gate(features[self.gate]))
        return self.fc_out(g * self.fc_value(features[self.gated]))
