"""FiLM fusion (Perez, Strub, de Vries, Dumoulin, Courville, "FiLM: Visual Reasoning
with a General Conditioning Layer", AAAI 2018), as used for two modalities in
the OGM-GE paper: the conditioning modality c produces ``gamma, beta = split(W_c phi_c + b_c)``,
which modulate the other modality t feature-wise, then a linear classifier:
``out = W_o (gamma * phi_t + beta) + b_o``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from .base import FusionHead, choose_pair


class FiLMFusion(FusionHead):
    """FiLM head for exactly two modalities; ``condition`` names the one producing gamma, beta.

    Default: ``"audio"`` when it is one of the two (audio conditions visual, as in the
    official code); with any other names there is no default and ``condition`` must be
    given (a ValueError says so) -- never the first modality by position."""

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, *, condition: str | None = None) -> None:
        super().__init__(in_dims, num_classes, exactly=2)
        self.condition, self.target = choose_pair("condition", "conditioning", condition, self.modalities)
        d_target = self.in_dims[self.target]
        self.film = nn.Linear(self.in_dims[self.condition], 2 * d_target)
        self.fc_out = nn.Linear(d_target, self.num_classes)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        self._check(features)
        gamma, beta = self.film(features[self.condition]).chunk(2, dim=-1)
        return self.fc_out(gamma * features[self.target] + beta)
