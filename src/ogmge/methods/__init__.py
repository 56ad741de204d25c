"""Balancing methods behind one protocol (layer 1, beside ``ogmge.modulation``; docs/methods.md).

``register``, ``get(name)``, ``names()`` (``ogmge.methods.registry``): every method
by name, with its options (``Option``) and requirements declared on its class.

Each method is one module naming its paper: G-Blending (``gblend``), modality
dropout (``mdrop``), MMPareto (``mmpareto``), the unimodal ensemble
(``uni_ensemble``), the uniform multitask baseline (``multitask``; MMPareto's
baseline), PMR (``pmr``), MMCosine's cosine classifier (``mmcosine``), MASAM (``masam``), InfoReg
(``inforeg``), UMT's uni-modal teachers (``umt``), plus adapters
(``inforeg``), sample-/modality-level valuation (``valuate``), plus adapters
(``inforeg``), AUG (``aug``), plus adapters
for OGM-GE and OPM (``adapters``). The ``stacked`` prediction rule (``stacked``:
this project's head combiner) pools a model's heads on validation; ``anchored`` is
the old name of ``multitask`` + ``stacked``. They know
tensors, parameters and modality names; never a model, dataset or trainer.
"""

from .adapters import OGMGEMethod, OPMMethod
from .agm import AGM, shapley_contributions
from .anchored import AnchoredFusion
from .aug import AUG, AUGHead
from .base import FUSED, BalancingMethod, BranchView, branch_views, cross_entropy
from .gblend import GBlending, blending_weights, floor_weights
from .inforeg import InfoReg
from .masam import MASAM
from .mcr import MCR, game_loss, js_divergence, supervised_nt_xent
from .mdrop import ModalityDropout
from .midas import MIDAS, midas_mixed_loss, swap_weights, update_alpha
from .mla import MLA, SharedHead
from .mmcosine import CosineHead, MMCosine, cosine_logits
from .mmpareto import MMPareto, average_gradients_, combine_gradients_
from .multitask import Multitask
from .normal import Normal
from .pmr import PMR, class_prototypes, pmr_loss, prototype_logits, weak_modalities
from .reconboost import BoostedSum, ReconBoost, boosting_loss, consolidation_loss, stage_plan
from .registry import (
    BuildContext,
    Option,
    Preset,
    Space,
    StepTools,
    describe,
    get,
    load_plugins,
    names,
    qualname,
    register,
    resolve_qualname,
)
from .relearn import Relearn, purity, reinit_strength, soft_reinit_
from .stacked import StackedPrediction
from .umt import UMT, distillation_terms
from .uni_ensemble import UnimodalEnsemble, ensemble_logits, fit_simplex_weights, project_simplex
from .valuate import Valuate, modality_values, resample_plan, sample_copies

__all__ = [
    "UMT",
    "distillation_terms",
    "AGM",
    "AUG",
    "AUGHead",
    "BranchView",
    "branch_views",
    "shapley_contributions",
    "AnchoredFusion",
    "InfoReg",
    "MASAM",
    "MIDAS",
    "midas_mixed_loss",
    "swap_weights",
    "update_alpha",
    "MLA",
    "SharedHead",
    "MCR",
    "game_loss",
    "js_divergence",
    "supervised_nt_xent",
    "CosineHead",
    "MMCosine",
    "PMR",
    "ReconBoost",
    "BoostedSum",
    "boosting_loss",
    "consolidation_loss",
    "stage_plan",
    "class_prototypes",
    "cosine_logits",
    "pmr_loss",
    "prototype_logits",
    "weak_modalities",
    "FUSED",
    "BalancingMethod",
    "BuildContext",
    "Normal",
    "Option",
    "Preset",
    "Space",
    "StepTools",
    "describe",
    "get",
    "load_plugins",
    "names",
    "qualname",
    "register",
    "resolve_qualname",
    "GBlending",
    "MMPareto",
    "ModalityDropout",
    "Multitask",
    "StackedPrediction",
    "OGMGEMethod",
    "OPMMethod",
    "UnimodalEnsemble",
    "average_gradients_",
    "blending_weights",
    "combine_gradients_",
    "cross_entropy",
    "ensemble_logits",
    "fit_simplex_weights",
    "floor_weights",
    "project_simplex",
    "Relearn",
    "purity",
    "reinit_strength",
    "soft_reinit_",
    "Valuate",
    "modality_values",
    "resample_plan",
    "sample_copies",
]
