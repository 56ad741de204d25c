"""Normal: joint training on the fused cross-entropy, no balancing (the baseline of every comparison)."""

from __future__ import annotations

from .base import BalancingMethod
from .registry import register


@register
class Normal(BalancingMethod):
    """Joint training on the fused cross-entropy (the baseline; OGM-GE's ``Normal`` mode)."""

    name = "normal"
    paper = "Peng et al., CVPR 2022 (the 'Normal' baseline of OGM-GE)"
    tie_rank = 0.0
    paper_flags = {"modulation": "Normal", "opm": False}
