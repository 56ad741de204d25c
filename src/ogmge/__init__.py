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
    "compare",
    "OPM",
    "ModulationStats",
    "OPMMasks",
    "__version__",
    "batch_scores",
    "discrepancy_ratios",
    "modulation_coefficients",
]


def __getattr__(name):
    """``ogmge.compare``: methods x seeds with a verdict (``ogmge.interfaces.compare_report``
    over the engine ``ogmge.training.compare``), imported on first use so that
    ``import ogmge`` stays the light modulation core."""
    if name == "compare":
        from .interfaces.compare_report import compare

        return compare
    raise AttributeError(f"module 'ogmge' has no attribute {name!r}")
