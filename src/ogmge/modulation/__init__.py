"""Model-agnostic modulation core: scores, ratios, coefficients, OGM/GE, OPM.

Knows tensors, parameters and modality names; knows no model, dataset or trainer.
"""

from .generators import GeneratorPool
from .ogmge import MODES, NOISE_TARGETS, OGMGE, Mode, ModulationStats, NoiseTarget
from .opm import OPM, OPMMasks, opm_drop_probabilities
from .scores import (
    COEFFICIENT_RULES,
    RATIO_EPS,
    RATIO_REDUCTIONS,
    CoefficientRule,
    RatioReduce,
    batch_scores,
    discrepancy_ratios,
    modulation_coefficients,
)
from .selection import SELECTIONS, Selection, Selector, select_parameters

__all__ = [
    "COEFFICIENT_RULES",
    "MODES",
    "NOISE_TARGETS",
    "RATIO_REDUCTIONS",
    "OGMGE",
    "OPM",
    "RATIO_EPS",
    "SELECTIONS",
    "CoefficientRule",
    "GeneratorPool",
    "Mode",
    "ModulationStats",
    "NoiseTarget",
    "OPMMasks",
    "RatioReduce",
    "Selection",
    "Selector",
    "batch_scores",
    "discrepancy_ratios",
    "modulation_coefficients",
    "opm_drop_probabilities",
    "select_parameters",
]
