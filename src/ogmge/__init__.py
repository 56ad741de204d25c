"""ogmge: balanced multimodal learning with OGM-GE (CVPR 2022) and OPM (TPAMI 2024)."""

from .modulation import (
    OGMGE,
    OPM,
    ModulationStats,
    OPMMasks,
    batch_scores,
    discrepancy_ratios,
    modulation_coefficients,
)

__version__ = "0.1.0"

__all__ = [
    "OGMGE",
    "OPM",
    "ModulationStats",
    "OPMMasks",
    "__version__",
    "batch_scores",
    "discrepancy_ratios",
    "modulation_coefficients",
]
