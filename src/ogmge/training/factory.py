"""Building the model, method, monitor, optimiser and scheduler of a run from its config.

The model's shape follows what the method class declares (``needs_heads``, its
prediction rules, ``model_parts``); the method is ``cls.build(ctx, **options)``
(``ogmge.methods.registry``). Random components are seeded from ``(config.seed,
their name)`` (:func:`ogmge.seeding.component_seed`): ``"ogmge"``, ``"opm"``,
``"estimator"``, and a method's own through ``BuildContext.component_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from ogmge.contracts import ModalitySpec
from ogmge.methods import BalancingMethod, BuildContext
from ogmge.modulation import OGMGE, Mode
from ogmge.seeding import component_seed

from .config import PAPER_DATASETS, TrainConfig


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


def method_model_options(config: TrainConfig, num_modalities: int, method_cls=None) -> dict:
    """What the run's method and prediction ask of the model: ``heads``, ``prediction``."""
    cls = method_cls if method_cls is not None else config.method_cls
    check_modality_count(cls, num_modalities)
    prediction = config.prediction or cls.predictions[0]
    out: dict = {}
    if cls.needs_heads or prediction != "fused":
        out["heads"] = True
    if prediction != "fused":
        out["prediction"] = prediction
    return out


def check_modality_count(cls, n: int) -> None:
    """Refuse data with fewer (or more) modalities than the method balances."""
    if n < cls.min_modalities:
        raise ValueError(f"method {cls.name!r} balances {cls.min_modalities} or more modalities; the data have {n}")
    if cls.max_modalities is not None and n > cls.max_modalities:
        raise ValueError(f"method {cls.name!r} balances at most {cls.max_modalities} modalities; the data have {n}")


def specs_from(spec: Mapping) -> dict[str, ModalitySpec]:
    return {n: ModalitySpec(n, d["kind"], tuple(d["shape"])) for n, d in spec["modalities"].items()}


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
    return MultimodalClassifier(encoders, head, estimator=make_estimator(config),
                                **method_model_options(config, len(encoders)))


def build_model_from_config(
    config: TrainConfig, modalities: Mapping[str, ModalitySpec], num_classes: int, *, builder: str | None = None
) -> tuple[nn.Module, str]:
    """The classifier for ``config`` and the data's modalities; ``(model, builder)``."""
    from ogmge import models

    builder = builder or default_builder(config, modalities)
    options = {k: v for k, v in config.model_options.items() if k != "builder"}
    method_options = method_model_options(config, len(modalities))
    if builder == "paper" and set(modalities) != {"audio", "visual"}:
        model = _paper_subset_model(config, list(modalities), num_classes, options)
    elif builder == "paper":
        model = models.build_paper_model(
            fusion=config.fusion,
            num_classes=num_classes,
            width=config.width,
            estimator=make_estimator(config),
            **options,
            **method_options,
        )
    else:
        model = models.build_model(
            dict(modalities),
            num_classes=num_classes,
            fusion=config.fusion,
            estimator=make_estimator(config),
            **options,
            **method_options,
        )
    wrap_method_fusion(config, model)
    add_method_parts(config, model)
    return model, builder


def wrap_method_fusion(config: TrainConfig, model: nn.Module) -> None:
    """Give ``model`` the fusion head its method uses (``wrap_fusion``; e.g. MMCosine's cosine
    classifier on the head's weights), its estimator re-bound to it, and the per-modality heads
    it uses (``wrap_heads``, when the model has heads)."""
    cls = config.method_cls
    fusion = getattr(model, "fusion", None)
    if fusion is None:
        return
    options = cls.resolve_options(config.method_options)
    head = cls.wrap_fusion(fusion, **options)
    if head is not fusion:
        cast(Any, model).fusion = head
        cast(Any, model).estimator = make_estimator(config).bind(head)
    heads = getattr(model, "heads", None)
    if heads is not None:  # the per-modality heads the method wants (``wrap_heads``; MLA's shared head)
        new = cls.wrap_heads(heads, head, **options)
        if new is not heads:
            cast(Any, model).heads = new


def build_context(config: TrainConfig, model: nn.Module, *, world_size: int = 1, device="cpu",
                  process_group=None, dependencies=None) -> BuildContext:
    """The :class:`~ogmge.methods.BuildContext` of a run's model (``dependencies``: default
    ``config.dependencies``, the runs its method ``depends_on``)."""
    encoders = getattr(model, "encoders", None)
    modalities = tuple(getattr(model, "modalities", None) or (encoders or {}))
    heads = getattr(model, "heads", None)
    fusion = getattr(model, "fusion", None)
    dims = dict(getattr(fusion, "in_dims", None) or {})
    parts = getattr(model, "parts", None)
    return BuildContext(
        modalities=modalities, feature_dims=dims, num_classes=int(getattr(fusion, "num_classes", 0) or 0),
        encoders=None if encoders is None else dict(encoders.items()),
        heads=None if heads is None else dict(heads.items()), fusion=fusion,
        parts={} if parts is None else dict(parts.items()), seed=config.seed, world_size=world_size,
        device=device, process_group=process_group, dependencies=dict(config.dependencies if dependencies is None else dependencies), epochs=config.epochs,
    )


def add_method_parts(config: TrainConfig, model: nn.Module, method_cls=None) -> None:
    """Attach the modules the method supplies (``model_parts``) to ``model.parts``."""
    cls = method_cls if method_cls is not None else config.method_cls
    opts = cls.resolve_options(config.method_options) if method_cls is None else {}
    parts = cls.model_parts(build_context(config, model), **opts)
    if parts:
        holder = getattr(model, "parts", None)
        if not isinstance(holder, nn.ModuleDict):
            raise TypeError(f"method {cls.name!r} supplies model parts {sorted(parts)}: the model needs a "
                            "'parts' nn.ModuleDict (MultimodalClassifier has one)")
        holder.update(parts)


def build_monitor(config: TrainConfig, model: nn.Module) -> OGMGE | None:
    """The always-on OGM-GE measurement beside the method: :func:`build_modulator` in ``Normal``
    mode (it changes no gradient), whose scores, ratios and coefficients every trace logs."""
    return build_modulator(config, model, mode="Normal")


def build_modulator(config: TrainConfig, model: nn.Module, *, mode: Mode | None = None) -> OGMGE | None:
    """The OGM-GE modulator on ``model.encoders`` (None with fewer than two modalities), in
    ``mode`` (default ``config.modulation``).

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
        mode=config.modulation if mode is None else mode,
        alpha=config.alpha,
        start_epoch=config.modulation_starts,
        end_epoch=config.modulation_ends,
        select=config.modulate_params or "auto",
        coefficient=config.coefficient,
        seed=component_seed(config.seed, "ogmge"),
    )


def build_method(config: TrainConfig, model: nn.Module, modulator: OGMGE | None = None, *, world_size: int = 1,
                 device="cpu", process_group=None, dependencies=None) -> BalancingMethod:
    """The run's balancing method: ``config.method_cls.build(ctx, **config.method_options)``
    on ``model`` (docs/methods.md). ``modulator`` is accepted for older callers and unused."""
    cls = config.method_cls
    if cls.needs_heads and getattr(model, "heads", None) is None:
        raise ValueError(f"method {cls.name!r} needs a model with per-modality heads (MultimodalClassifier(heads=True))")
    ctx = build_context(config, model, world_size=world_size, device=device, process_group=process_group,
                        dependencies=dependencies)
    check_modality_count(cls, len(ctx.modalities))
    return cls.build(ctx, **config.method_options)


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
