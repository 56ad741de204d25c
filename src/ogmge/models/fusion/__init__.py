"""Fusion heads, one module each: sum, concat (any N), FiLM, gated (two modalities), attention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ...validation import check_choice
from .attention import AttentionFusion
from .base import FusionHead
from .concat import ConcatFusion
from .film import FiLMFusion
from .gated import GatedFusion
from .sum import SumFusion

#: The fusion heads by name (the keys of ``FUSIONS``).
FusionName = Literal["sum", "concat", "film", "gated", "attention"]
FUSIONS: dict[FusionName, type[FusionHead]] = {
    "sum": SumFusion,
    "concat": ConcatFusion,
    "film": FiLMFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}


def build_fusion(name: FusionName, in_dims: Mapping[str, int], num_classes: int, **options) -> FusionHead:
    """The fusion head called ``name`` (one of ``FUSIONS``); ``options`` go to its constructor."""
    check_choice("fusion", name, FUSIONS)
    return FUSIONS[name](in_dims, num_classes, **options)


__all__ = [
    "FUSIONS",
    "FusionName",
    "AttentionFusion",
    "ConcatFusion",
    "FiLMFusion",
    "FusionHead",
    "GatedFusion",
    "SumFusion",
    "build_fusion",
]
