"""Model-agnostic modulation core: scores, ratios, coefficients, OGM/GE, OPM.

Knows tensors, parameters and modality names; knows no model, dataset or trainer.
"""

from .generators import GeneratorPool
from .ogmge import MODES, OGMGE, ModulationStats
from .opm import OPM, OPMMasks, opm_drop_probabilities
from .scores import RATIO_EPS, batch_scores, discrepancy_ratios, modulation_coefficients
from .selection import SELECTIONS, select_parameters

__all__ = [
    "MODES",
    "OGMGE",
    "OPM",
    "RATIO_EPS",
    "SELECTIONS",
    "GeneratorPool",
    "ModulationStats",
    "OPMMasks",
    "batch_scores",
    "discrepancy_ratios",
    "modulation_coefficients",
    "opm_drop_probabilities",
    "select_parameters",
]
