"""Building the model, optimiser, scheduler and modulator of a run from its config.

Random components are seeded here, and only here, each from ``(config.seed, its name)``
(:func:`ogmge.seeding.component_seed`): ``"ogmge"``, ``"opm"``, ``"estimator"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from ogmge.contracts import ModalitySpec
from ogmge.methods import (
    AnchoredFusion,
    BalancingMethod,
    GBlending,
    MMCosine,
    MMPareto,
    ModalityDropout,
    OGMGEMethod,
    UnimodalEnsemble,
)
from ogmge.methods.agm import AGM
from ogmge.methods.mmcosine import CosineHead
from ogmge.methods.pmr import PMR
from ogmge.modulation import OGMGE, OPM
from ogmge.seeding import component_seed

from .config import PAPER_DATASETS, TrainConfig

#: Methods whose model has trainable per-modality heads (``ModelOutput.head_logits``).
HEAD_METHODS = ("gblend", "mmpareto", "uni_ensemble", "anchored")


def model_spec(
    modalities: Mapping[str, ModalitySpec], num_classes: int, class_names, builder: str, model: nn.Module | None = None
) -> dict:
    """What a checkpoint needs to rebuild its model without the data (``heads`` and
    ``prediction`` are recorded from ``model``; the config's ``method`` rebuilds them)."""
    return {
        "builder": builder,
        "modalities": {n: {"kind": s.kind, "shape": list(s.shape)} for n, s in modalities.items()},
        "num_classes": int(num_classes),
        "class_names": list(class_names),
        "heads": getattr(model, "heads", None) is not None,
        "prediction": getattr(model, "prediction", "fused"),
    }


def method_model_options(config: TrainConfig, num_modalities: int) -> dict:
    """What the config's method asks of the model: ``heads``, ``prediction``, ``feature_transform``."""
    method = config.resolved_method
    if method in (*HEAD_METHODS, "mdrop", "pmr", "agm") and num_modalities < 2:
        raise ValueError(f"method {method!r} balances two or more modalities; the data have {num_modalities}")
    out: dict = {}
    if method in HEAD_METHODS:
        out["heads"] = True
    if method == "uni_ensemble":
        out["prediction"] = "ensemble"
    if method == "anchored":
        out["prediction"] = "blend"
    return out


def specs_from(spec: Mapping) -> dict[str, ModalitySpec]:
    return {n: ModalitySpec(n, d["kind"], tuple(d["shape"])) for n, d in spec["modalities"].items()}


def make_opm(config: TrainConfig) -> OPM | None:
    """OPM with the config's settings; its masks draw from ``component_seed(seed, "opm")``."""
    if not config.opm:
        return None
    return OPM(q_base=config.opm_q_base, lam=config.opm_lam, p_exe=config.opm_p_exe,
               rescale=config.opm_rescale, ratio=config.opm_ratio,  # type: ignore[arg-type]
               start_epoch=config.opm_starts, end_epoch=config.opm_ends,
               seed=component_seed(config.seed, "opm"))


def make_estimator(config: TrainConfig):
    """The per-modality logit estimator named by the config (default: the fusion head's own);
    its permutations (sampled Shapley) draw from ``component_seed(seed, "estimator")``."""
    from ogmge.models import FUSIONS, LogitEstimator

    name = config.estimator or FUSIONS[config.fusion].default_estimator
    return LogitEstimator(name, seed=component_seed(config.seed, "estimator"))


def default_builder(config: TrainConfig, modalities: Mapping[str, ModalitySpec]) -> str:
    """``paper`` (the paper's ResNet-18 encoders) for the paper's datasets, also when
    one of ``audio``/``visual`` is trained alone; ``generic`` (encoders by kind) otherwise."""
    if config.model_options.get("builder") in ("paper", "generic"):
        return config.model_options["builder"]
    if config.dataset in PAPER_DATASETS and set(modalities) <= {"audio", "visual"}:
        return "paper"
    return "generic"


def _paper_subset_model(config: TrainConfig, names, num_classes: int, options: dict):
    """The paper model's encoder(s) for a subset of ``audio``/``visual`` (unimodal baselines)."""
    from ogmge.models import AudioEncoder, MultimodalClassifier, VisualEncoder, build_fusion

    makers = {"audio": AudioEncoder, "visual": VisualEncoder}
    encoders = {n: makers[n](width=config.width) for n in names}
    head = build_fusion(config.fusion, {n: cast(int, e.out_dim) for n, e in encoders.items()}, num_classes,
                        **dict(options.get("fusion_options") or {}))
    return MultimodalClassifier(encoders, head, estimator=make_estimator(config), opm=make_opm(config),
                                **method_model_options(config, len(encoders)))


def build_model_from_config(
    config: TrainConfig, modalities: Mapping[str, ModalitySpec], num_classes: int, *, builder: str | None = None
) -> tuple[nn.Module, str]:
    """The classifier for ``config`` and the data's modalities; ``(model, builder)``."""
    from ogmge import models

    builder = builder or default_builder(config, modalities)
    options = {k: v for k, v in config.model_options.items() if k != "builder"}
    method_options = method_model_options(config, len(modalities))
    if config.resolved_method == "mdrop":
        method_options["feature_transform"] = ModalityDropout(list(modalities), p=config.mdrop_p, seed=config.seed)
    if builder == "paper" and set(modalities) != {"audio", "visual"}:
        model = _paper_subset_model(config, list(modalities), num_classes, options)
    elif builder == "paper":
        model = models.build_paper_model(
            fusion=config.fusion,
            num_classes=num_classes,
            width=config.width,
            estimator=make_estimator(config),
            opm=make_opm(config),
            **options,
            **method_options,
        )
    else:
        model = models.build_model(
            dict(modalities),
            num_classes=num_classes,
            fusion=config.fusion,
            estimator=make_estimator(config),
            opm=make_opm(config),
            **options,
            **method_options,
        )
    if config.resolved_method == "mmcosine":  # the cosine classifier on the head's own weights
        model = models.MultimodalClassifier(
            dict(model.encoders.items()), MMCosine.wrap_fusion(model.fusion, scale=config.mmcosine_scale),
            estimator=make_estimator(config), opm=model.opm, **method_options)
    return model, builder


def build_modulator(config: TrainConfig, model: nn.Module) -> OGMGE | None:
    """The OGM-GE modulator on ``model.encoders`` (None with fewer than two modalities).

    In ``Normal`` mode it only measures scores, ratios and coefficients for the trace.
    Parameters: ``modulate_params``, or by default ``auto`` (per encoder, ``conv``
    when it has conv kernels, rank >= 3, the paper's choice; ``weights`` otherwise).
    Its GE noise draws from ``component_seed(seed, "ogmge")`` (:mod:`ogmge.seeding`).
    """
    encoders = getattr(model, "encoders", None)
    if encoders is None:
        raise TypeError("the model must expose its encoders as model.encoders (an nn.ModuleDict)")
    if len(encoders) < 2:
        return None
    return OGMGE(
        dict(encoders.items()),
        mode=config.modulation,
        alpha=config.alpha,
        start_epoch=config.modulation_starts,
        end_epoch=config.modulation_ends,
        select=config.modulate_params or "auto",
        coefficient=config.coefficient,
        seed=component_seed(config.seed, "ogmge"),
    )


def build_method(config: TrainConfig, model: nn.Module, modulator: OGMGE | None = None) -> BalancingMethod:
    """The balancing method of ``config`` on ``model`` (docs/methods.md).

    ``normal``/``ogm``/``ogm_ge`` (and OPM, which the model runs itself): the
    OGM-GE adapter around ``modulator`` (measure-only in ``Normal`` mode), or the
    plain protocol when there is none; ``mdrop``: the model's own
    :class:`ModalityDropout` (a feature transform); the others from their
    prefixed hyper-parameters on ``model.encoders``/``model.heads``.
    """
    method = config.resolved_method
    names = list(getattr(model, "modalities", None) or getattr(model, "encoders", {}))
    if method in HEAD_METHODS and getattr(model, "heads", None) is None:
        raise ValueError(f"method {method!r} needs a model with per-modality heads (MultimodalClassifier(heads=True))")
    if method == "gblend":
        return GBlending(names, super_epoch=config.gblend_super_epoch, w_min=config.gblend_w_min,
                         delta_o_min=config.gblend_delta_o_min)
    if method == "mmpareto":
        # {modality: encoder}; nn.Module's __getattr__ is typed as Tensor | Module
        encoders = cast(Mapping[str, nn.Module], model.encoders)
        return MMPareto(dict(encoders.items()), scale=config.mmpareto_scale)
    if method == "uni_ensemble":
        return UnimodalEnsemble(names)
    if method == "pmr":
        return PMR(names, int(cast(int, model.num_classes)), alpha=config.pmr_alpha, momentum=config.pmr_momentum,
                   start=config.pmr_start, end=config.pmr_end, subset=config.pmr_subset)
    if method == "agm":
        return AGM(names, cast(nn.Module, model.fusion), list(model.parameters()), alpha=config.agm_alpha,
                   start=config.agm_start, end=config.agm_end, cap=config.agm_cap, clip=config.agm_clip)
    if method == "mmcosine":
        if not isinstance(getattr(model, "fusion", None), CosineHead):
            raise ValueError("method 'mmcosine' needs a model whose fusion head is a CosineHead")
        return MMCosine(config.mmcosine_scale)
    if method == "anchored":
        return AnchoredFusion(names, anchor_weight=config.anchored_weight)
    if method == "mdrop":
        ft = getattr(model, "feature_transform", None)
        if not isinstance(ft, ModalityDropout):
            raise ValueError("method 'mdrop' needs a model whose feature_transform is a ModalityDropout")
        return ft
    if modulator is not None:
        return OGMGEMethod(modulator)
    return BalancingMethod()


def build_optimizer(config: TrainConfig, params, *, builder: str = "generic") -> torch.optim.Optimizer:
    """The run's optimiser; ``optimizer: auto`` resolves by ``builder`` (``TrainConfig.resolved_optimizer``)."""
    params = [p for p in params if p.requires_grad]
    name = config.resolved_optimizer(builder)
    if name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer) -> torch.optim.lr_scheduler.StepLR:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
