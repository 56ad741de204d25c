"""The training loop: seeded, resumable, OGM-GE wired between backward and step.

One optimiser step (``Trainer._train_step``), in the paper's order::

    out = _forward(batch)          # model(inputs, lengths, labels, transform=method.transform_features):
                                   #   features, fused and per-modality logits; the method's
                                   #   feature transform (OPM, modality dropout) before fusion
    loss = _loss(out, labels)      # method.loss: total and per-head terms (+ the probe heads' loss)
    _backward(loss)                # method.backward (MMPareto owns it); scaled under AMP
    _after_backward(...)           # AMP: scaler.unscale_; _balance_gradients (the OGM-GE monitor
                                   #   measures, then method.after_backward: OGM/OGM-GE modulate);
                                   #   non-finite guard; clip_grad_norm_
    _optimizer_step(skip)          # method.before_step; optimizer.step(), unless skipped

A method that owns the step (``owns_step``) runs these through ``StepTools`` itself.
The balancing method (``--method``, docs/methods.md) is an object the trainer is
given or builds from the registry; the loop knows no method by name. The OGM-GE
monitor (measure-only, ``factory.build_monitor``) runs beside every method so every
trace has scores, ratios and k. An epoch, in order (``_end_epoch``): validation
(``method.end_epoch`` gets the per-head training and validation losses; the
prediction's weights are fitted; methods fitted on validation are scored by
cross-fitting), test when asked, the best epoch, the log, the checkpoint.

Non-finite guard: a step whose loss or any gradient is NaN/inf is skipped -- no
``optimizer.step()``, so neither the weights nor the optimizer's state (momentum,
Adam moments) see it -- counted in ``train/skipped_steps`` and traced with its
``skip_reason``. After ``MAX_CONSECUTIVE_SKIPS`` skipped steps in a row the run stops
with ``NonFiniteError`` naming the step and the first non-finite tensor; the last
checkpoint, written at the end of an earlier epoch, is untouched. The skip decision
is the step's one device-to-host read (a 0-d bool); every other step statistic
stays on the device and reaches the host once per trace flush.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ogmge.data.views import TaggedRows, set_epoch
from ogmge.methods import BalancingMethod, StepTools, qualname
from ogmge.methods import registry as method_registry
from ogmge.modulation import ModulationStats
from ogmge.seeding import component_seed

from . import balancing
from . import checkpoint as ckpt_mod
from . import distributed as distrib
from . import stopping as stopping_mod
from .config import TrainConfig, method_notes
from .data import DataBundle, build_datasets, check_trainable, epoch_seed, make_loader  # noqa: F401
from .factory import (
    build_context,
    build_method,
    build_model_from_config,
    build_monitor,
    build_optimizer,
    build_scheduler,
    check_modality_count,
    model_spec,
)
from .fingerprint import check_same_data, check_same_shapes, data_fingerprint
from .logs import CONFIG, LOGGER, METRICS, RESULTS, TRACE, Choice, RunLog, truncate_jsonl
from .metrics import encoder_features, evaluate, to_device
from .pairs import PredictionPairs
from .results import RunResults
from .rundir import check_new_run_dir, check_resume_dir, prepare_new_run_dir
from .selection import select_validation

#: Skipped (non-finite) steps in a row after which the run stops. Under AMP the
#: scaler's first overflow steps count too; they halve the scale each time, so 25
#: in a row means the loss itself is not finite.
MAX_CONSECUTIVE_SKIPS = 25
#: Steps between two flushes of the trace rows to the host (and the progress bar's loss).
TRACE_FLUSH_EVERY = 50
#: Paths in the config stored resolved, so a run resumes and evaluates from any directory.
PATH_SETTINGS = ("data", "data_root", "split_file")


class NonFiniteError(ValueError):
    """Training stopped: too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class StepResult:
    """What one training step leaves (device tensors, except ``skip_reason``)."""

    loss: Tensor
    logits: Tensor
    labels: Tensor
    stats: ModulationStats | None  # what a method's after_backward returns (OGM-GE's), else None
    skip_reason: str | None
    head_losses: dict = field(default_factory=dict)  # {"fused"/modality: detached per-head loss}


ModelArg = nn.Module | Callable[[DataBundle, TrainConfig], nn.Module] | None
MethodArg = BalancingMethod | type[BalancingMethod] | None
Callback = Callable[[str, dict], None]


@dataclass
class RunResult:
    """What ``train`` returns. ``model`` holds the selected (best) weights (on rank 0 under DDP;
    other ranks keep the last epoch's)."""

    config: TrainConfig
    model: nn.Module
    run_dir: Path | None
    history: list[dict]
    best_epoch: int
    selected_by: str
    val_metrics: dict | None
    test_metrics: dict | None
    start_epoch: int = 0
    resumed: bool = False
    seconds: float = 0.0
    class_names: list[str] = field(default_factory=list)
    #: The selected checkpoint on the held-out half (``val_selection: {holdout: true}``), else None.
    holdout_metrics: dict | None = None
    #: The method's other prediction rules, each at its own selected epoch (``results.json``'s
    #: ``pairs``; ``ogmge.training.pairs``): ``{rule: {best_epoch, val, test, ...}}``
    pairs: dict = field(default_factory=dict)


def overflow_limit(dtype: torch.dtype) -> float:
    """The largest |g| whose square is finite in ``dtype`` (a larger gradient would turn
    Adam's second moment into inf and silently stop that parameter)."""
    return float(torch.finfo(dtype).max) ** 0.5 if dtype.is_floating_point else float("inf")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def probe_loss(model: nn.Module, out, labels: torch.Tensor) -> torch.Tensor | None:
    """The probe heads' own loss, when the model's estimator trains probes."""
    value = getattr(out, "probe_loss", None)
    if value is not None:
        return value
    fn = getattr(model, "probe_loss", None)
    if callable(fn):
        return fn(out, labels)
    return None


def _batch_loss(out, labels: torch.Tensor) -> torch.Tensor:
    per = F.cross_entropy(out.logits.float(), labels, reduction="none")
    keep = getattr(out, "sample_keep", None)
    if keep is None:
        return per.mean()
    w = keep.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0)


def _check_output(out) -> None:
    for name in ("logits", "modality_logits"):
        if not hasattr(out, name):
            raise TypeError(f"the model must return a ModelOutput with .{name}; got {type(out).__name__}")


class Trainer:
    """Holds a run's objects; ``fit()`` trains, ``train()`` is the one-call form."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        datasets: DataBundle | None = None,
        model: ModelArg = None,
        callbacks: Sequence[Callback] = (),
        overwrite: bool = False,
        allow_data_change: bool = False,
        method: MethodArg = None,
        dependencies: Mapping[str, str] | None = None,
    ) -> None:
        #: ``{key: run dir}`` of runs the method builds on (``ctx.dependencies``; see ``depends_on``);
        #: None: the config's ``dependencies`` (what ``compare`` sets)
        self.dependencies = None if dependencies is None else dict(dependencies)
        values = config.to_dict()
        for key in PATH_SETTINGS:  # resolved: a resume or eval from another directory finds the data
            if values.get(key):
                values[key] = os.path.abspath(os.path.expanduser(values[key]))
        values.update(_method_settings(method, config))
        self.config = TrainConfig.from_dict(values)
        self.resume = resume
        self.callbacks = list(callbacks)
        self.ctx = distrib.setup(self.config.device)
        self.device = distrib.resolve_device(self.config.device, self.ctx)
        self.run_dir = Path(self.config.out) if self.config.out else None
        self.is_main = self.ctx.is_main
        self.fingerprint = {"kind": "custom"} if datasets is not None else data_fingerprint(self.config)
        self.ckpt = self._read_resume_checkpoint(allow_data_change) if resume else None
        new_dir = self.run_dir is not None and not resume and self.is_main
        if new_dir:  # fail fast; the directory is created once the data have passed their checks
            assert self.run_dir is not None
            check_new_run_dir(self.run_dir, overwrite=overwrite)

        seed_everything(self.config.seed)
        self.data = datasets if datasets is not None else build_datasets(self.config)
        # the samples that select (val_selection: half A, a fold); the held-out half is read once, in _finish
        self.data, self.holdout = select_validation(self.data, self.config.val_selection)
        check_trainable(self.data)
        if self.ckpt is not None:
            check_same_shapes(self.ckpt["model_spec"], self.data, what=f"cannot resume {self.run_dir}")
        if new_dir:
            assert self.run_dir is not None
            prepare_new_run_dir(self.run_dir, overwrite=overwrite)
        torch.manual_seed(self.config.seed)  # model init independent of how the data were built
        if isinstance(model, nn.Module):
            self.model, builder = model, "custom"
        elif callable(model):
            self.model, builder = model(self.data, self.config), "custom"
        else:
            self.model, builder = build_model_from_config(self.config, self.data.modalities, self.data.num_classes)
        self.model.to(self.device)
        self.spec = model_spec(self.data.modalities, self.data.num_classes, self.data.class_names, builder,
                               self.model)
        self.monitor = build_monitor(self.config, self.model)  # the OGM-GE measurement of every run
        try:
            self.method = self._make_method(method)
            if self.ckpt is None and getattr(self.method, "loads_alone_encoders", False):
                ckpt_mod.load_alone_encoders_(self.model, dict(self.config.dependencies if self.dependencies is None
                                                               else self.dependencies))
            balancing.check_method(self.method, distributed=self.ctx.enabled, has_val=self.data.val is not None,
                                   val_size=None if self.data.val is None else len(self.data.val))
        except ValueError:
            distrib.teardown(self.ctx)  # the process group this trainer set up
            raise
        self.val_protocol = balancing.val_protocol(self.method, self.model, self.data.val is not None)
        self.train_head_losses: dict | None = None
        self._prediction_trace = balancing.prediction_row(self.model)
        if self.monitor is None and self.config.modulation != "Normal":
            LOGGER.warning("one modality (%s): modulation %s has nothing to balance; training without it",
                           list(self.data.modalities), self.config.modulation)
        self.optimizer = build_optimizer(self.config, self.model.parameters(), builder=builder)
        self.builder = builder
        self._build_stopping(builder)  # selection and early stopping (self.stopping, self.patience)
        # the method's other prediction rules, each selected on its own (ogmge.training.pairs)
        self.pairs = PredictionPairs.build(self.method, self.model,
                                           getattr(self.model, "prediction", self.config.resolved_prediction),
                                           self._make_rule, has_val=self.data.val is not None, seed=self.config.seed)
        self._val_outputs: dict | None = None
        self.optimizer_name = self.config.resolved_optimizer(builder)
        self.scheduler = build_scheduler(self.config, self.optimizer)
        self.amp = self.config.amp and self.device.type == "cuda"
        if self.config.amp and not self.amp:
            LOGGER.warning("amp needs a CUDA device; training in float32 on %s", self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.net = self.model
        if self.ctx.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.train_loader, self.train_sampler = make_loader(
            self.data.train, self.config, shuffle=True, ctx=self.ctx, device=self.device
        )
        self.eval_loaders = {
            split: make_loader(ds, self.config, shuffle=False, device=self.device)[0]
            for split, ds in (("val", self.data.val), ("test", self.data.test))
            if ds is not None
        }
        self.start_epoch = 0
        self.history: list[dict] = []
        self.best: dict[str, Any] = {"epoch": -1, "score": float("-inf"), "val": None}
        self.best_state: dict | None = None
        self.global_step = 0
        self.consecutive_skips = 0
        self.max_consecutive_skips = MAX_CONSECUTIVE_SKIPS
        if self.ckpt is not None:
            self._load_resume_state()

    def _make_method(self, method: MethodArg) -> BalancingMethod:
        """The run's method: the object given, a class given built from the config's options,
        or the config's method from the registry."""
        ctx = build_context(self.config, self.model, world_size=self.ctx.world_size, device=self.device,
                            dependencies=self.dependencies)
        if isinstance(method, BalancingMethod):
            check_modality_count(type(method), len(ctx.modalities))
            return method
        if method is not None:
            check_modality_count(method, len(ctx.modalities))
            return method.build(ctx, **self.config.method_options)
        return build_method(self.config, self.model, world_size=self.ctx.world_size, device=self.device,
                            dependencies=self.dependencies)

    # ------------------------------------------------------------- resume
    def _read_resume_checkpoint(self, allow_data_change: bool) -> dict:
        if self.run_dir is None:
            raise ValueError("resume needs the run directory (out / --resume RUN_DIR)")
        check_resume_dir(self.run_dir)
        path = self.run_dir / ckpt_mod.LAST
        if not path.is_file():
            raise FileNotFoundError(
                f"cannot resume {self.run_dir}: its checkpoint {path} is missing (the run stopped before its "
                "first checkpoint, or the file was deleted); restore it, start over with --overwrite, "
                "or start a new run with another --out"
            )
        ckpt = ckpt_mod.load_checkpoint_file(path)
        if self.is_main:  # finish an epoch's checkpoint writes interrupted by a kill
            ckpt_mod.settle_best(self.run_dir, (ckpt.get("best") or {}).get("epoch"))
        check_same_data(ckpt.get("data_fingerprint"), self.fingerprint, what=f"cannot resume {self.run_dir}",
                        allow=allow_data_change)
        saved = TrainConfig.from_dict({"stopping": stopping_mod.LEGACY, **ckpt["config"]})
        if stopping_mod.compatible(self.config.stopping, saved.stopping):  # the rule the run started with
            self.config = self.config.replace(stopping=saved.stopping)
        diffs = saved.differences(self.config)
        if diffs:  # only settings the run reads, named part.setting
            raise ValueError(
                f"cannot resume {self.run_dir}: the configuration differs from the checkpoint's in "
                f"{', '.join(diffs.labels())} ({diffs.describe('checkpoint', 'now')})"
            )
        return ckpt

    def _load_resume_state(self) -> None:
        ck = self.ckpt
        assert ck is not None  # read in __init__ when resuming
        self.model.load_state_dict(ck["model"])  # with its helpers' state; an older "extra_states" copy is ignored
        self._restore_param_groups(ck.get("optimizer_groups") or [])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        if self.monitor is not None and ck.get("monitor"):
            self.monitor.load_state_dict(ck["monitor"])
        if ck.get("legacy_method_state"):  # written before the registry: the method's state lived elsewhere
            self.method.load_legacy_state(ck["legacy_method_state"])
        if ck.get("method"):
            self.method.load_state_dict(ck["method"])
        self._prediction_trace = balancing.prediction_row(self.model)
        self.start_epoch = int(ck["epoch"]) + 1
        self.global_step = int(ck.get("global_step", 0))
        self.history = list(ck.get("history", []))
        best = ck.get("best") or {}
        self.best = {"epoch": best.get("epoch", -1), "score": best.get("score", float("-inf")),
                     "val": best.get("val")}
        if ck.get("pairs"):
            self.pairs.load_state_dict(ck["pairs"])
        elif self.pairs:  # written before the other rules were selected: their epochs so far are unknown
            self.pairs = PredictionPairs((), (), self._make_rule)
        if ck.get("stopping"):
            self.stopping.load_state_dict(ck["stopping"])
        else:  # a checkpoint from before rules kept a state: the same state, from its metric rows
            stopping_mod.replay(self.stopping, self.history)
        self.patience = self.stopping.patience
        rng = ck["rng"]
        per_rank = rng.get("per_rank")
        ckpt_mod.restore_rng(per_rank[self.ctx.rank] if per_rank and len(per_rank) == self.ctx.world_size
                             else rng["main"])

    def _restore_param_groups(self, saved: list) -> None:
        """Re-add the optimizer's parameter groups a method added during the run
        (``new_param_groups``), by the parameter names the checkpoint recorded, in their order."""
        params = dict(self.model.named_parameters())
        for names in saved[len(self.optimizer.param_groups):]:
            missing = [n for n in names if n not in params]
            if missing:
                raise ValueError(f"cannot resume {self.run_dir}: an optimizer group added during the run holds "
                                 f"{missing}, which the rebuilt model lacks")
            self.optimizer.add_param_group({"params": [params[n] for n in names]})

    def _add_method_param_groups(self) -> None:
        """The parameters a method created (``new_param_groups``) join the optimizer, with the
        hyper-parameters of its first group now (its current learning rate)."""
        for group in self.method.new_param_groups():
            base = {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}
            self.optimizer.add_param_group({**base, **group})

    def _param_group_names(self) -> list[list[str]]:
        """Every optimizer group's parameter names (a checkpoint's ``optimizer_groups``)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [[names.get(id(p), "") for p in g["params"]] for g in self.optimizer.param_groups]

    # ------------------------------------------------------------- training
    def fit(self) -> RunResult:
        cfg = self.config
        t0 = time.perf_counter()
        if self.is_main and self.run_dir is not None:
            start = self.start_epoch
            if self.resume:  # drop rows of epochs after the checkpoint (written before a crash)
                truncate_jsonl(self.run_dir / METRICS, lambda r: r.get("epoch", -1) < start)
                truncate_jsonl(self.run_dir / TRACE, lambda r: r.get("epoch", -1) < start)
            cfg.save(self.run_dir / CONFIG)
        log = RunLog(self.run_dir, enabled=self.is_main, tensorboard=cfg.tensorboard)
        try:
            if self.is_main and self.resume:
                LOGGER.info("resuming %s from its checkpoint after epoch %d: starting at epoch %d of %d (index %d)",
                            self.run_dir, self.start_epoch, self.start_epoch + 1, cfg.epochs, self.start_epoch)
            elif self.is_main:
                LOGGER.info("training %s: %d epochs on %s, modalities %s, modulation %s",
                            self.run_dir or "(no run dir)", cfg.epochs, self.device,
                            list(self.data.modalities), cfg.resolved_method)
                for line in method_notes(cfg):  # the dataset preset it uses; shared vs the authors' schedule
                    LOGGER.info("%s", line)
            if self.start_epoch >= cfg.epochs and self.is_main:
                LOGGER.info("nothing to train: the run already completed %d epochs", self.start_epoch)
            if self.start_epoch == 0:
                self._begin_method()
            for epoch in range(self.start_epoch, cfg.epochs):
                if self._patience_exhausted(epoch - 1):
                    break
                self._split_features_method(epoch - 1)
                self._start_epoch_method(epoch)
                self._begin_epoch(epoch)
                row = self._train_epoch(epoch, log)
                self._end_epoch(epoch, row, log)
            return self._finish(log, t0)
        finally:
            log.close()
            distrib.teardown(self.ctx)

    def _build_stopping(self, builder: str) -> None:
        """The run's selection/stopping rule (``training/stopping.py``), recorded resolved in its config."""
        cfg = self.config
        rule_id = stopping_mod.resolve(cfg.stopping, builder)
        self.config = cfg.replace(stopping=rule_id)
        patience = None if cfg.resolved_patience(builder) is None else cfg.patience  # "auto": the rule's
        self._make_rule = functools.partial(stopping_mod.build_rule, rule_id, epochs=cfg.epochs, patience=patience)
        self.stopping = self._make_rule()
        self.patience = self.stopping.patience

    def _patience_exhausted(self, last_epoch: int) -> bool:
        """Early stopping, as the rule says (``training/stopping.py``). Decided from the
        checkpointed rule state (so a resumed run stops where it would have); rank 0's
        decision under DDP."""
        # with other prediction rules (ogmge.training.pairs), when every rule's selection has ended
        stop = self.is_main and self.stopping.should_stop(last_epoch) and self.pairs.should_stop(last_epoch)
        if self.ctx.enabled:
            stop = bool(distrib.gather_objects(stop, self.ctx)[0])
        if stop and self.is_main:
            LOGGER.info("early stop after epoch %d: the selection signal (%s) has not improved for %d epochs "
                        "(selected epoch %d)", last_epoch + 1, self.stopping.describe(), self.patience,
                        self.best["epoch"] + 1)
        return stop

    def _begin_method(self) -> None:
        """The initial model's per-head losses for methods that want them (``wants_initial_losses``)."""
        if self.is_main:
            train_eval = make_loader(self.data.train, self.config, shuffle=False, device=self.device)[0]
            start = balancing.initial_losses(self.method, self.model, train_eval, self.eval_loaders.get("val"),
                                             self.device, amp=self.amp, seed=self.config.seed)
            if start is not None:
                self.method.begin(train_losses=start[0], val_losses=start[1])
        balancing.share_state(self.method, self.model, self.ctx)

    def _start_epoch_method(self, epoch: int) -> None:
        """``method.start_epoch`` with eval-mode encoder features of a seeded training subset
        (PMR's prototypes); identical on every rank (same subset, same weights)."""
        if not self.method.wants_epoch_features:
            return
        n = len(self.data.train)
        size = max(1, min(n, math.ceil(self.method.subset * n)))
        gen = torch.Generator().manual_seed(component_seed(self.config.seed, f"{self.method.name}/epoch{epoch}"))
        index = torch.randperm(n, generator=gen)[:size].sort().values.tolist()
        loader = make_loader(torch.utils.data.Subset(self.data.train, index), self.config, shuffle=False,
                             device=self.device)[0]
        features, labels = encoder_features(self.model, loader, self.device)
        self.method.start_epoch(epoch, features=features, labels=labels)

    def _split_features_method(self, last_epoch: int) -> None:
        """``method.split_features`` after epoch ``last_epoch``'s checkpoint, before the next epoch
        (``wants_split_features``, when due): eval-mode encoder features of the whole training split
        and of the validation split (half A for ``cross_fit = "split"``). A resumed run calls it
        here too, from the checkpoint's weights, so it repeats what the interrupted run did."""
        method = self.method
        if last_epoch < 0 or not method.wants_split_features or not method.split_features_due(last_epoch):
            return
        cfg = self.config
        set_epoch(self.data.train, last_epoch)  # the same per-epoch view of the data as after that epoch
        train = encoder_features(self.model, make_loader(self.data.train, cfg, shuffle=False,
                                                         device=self.device)[0], self.device)
        heldout = None
        if self.data.val is not None:
            val = self.data.val
            if method.cross_fit == "split":
                val = torch.utils.data.Subset(val, balancing.halves(len(val), cfg.seed)[0].tolist())
            heldout = encoder_features(self.model, make_loader(val, cfg, shuffle=False, device=self.device)[0],
                                       self.device)
        method.split_features(last_epoch, train=train, heldout=heldout)

    def _begin_epoch(self, epoch: int) -> None:
        """The method's per-epoch hook on the training data: re-sampled indices (with per-position
        tags that the batches carry, when the method returns ``(indices, tags)``), or the usual pass."""
        def outputs(*, index=None, features: bool = False):
            data = self.data.train if index is None else torch.utils.data.Subset(
                self.data.train, [int(i) for i in torch.as_tensor(index).tolist()])
            loader = make_loader(data, self.config, shuffle=False, device=self.device)[0]
            return balancing.collect(self.model, loader, self.device, amp=self.amp, features=features)

        indices = self.method.begin_epoch(epoch, train_size=len(self.data.train), outputs=outputs)
        self._add_method_param_groups()
        tags = None
        if isinstance(indices, tuple):
            indices, tags = indices
        if indices is None:
            if getattr(self, "_resampled", False):
                self.train_loader, self.train_sampler = make_loader(
                    self.data.train, self.config, shuffle=True, ctx=self.ctx, device=self.device)
                self._resampled = False
            return
        rows = [int(i) for i in torch.as_tensor(indices).tolist()]
        subset = (torch.utils.data.Subset(self.data.train, rows) if tags is None
                  else TaggedRows(self.data.train, rows, torch.as_tensor(tags).tolist()))
        self.train_loader, self.train_sampler = make_loader(subset, self.config, shuffle=True, ctx=self.ctx,
                                                            device=self.device)
        self._resampled = True

    def _estimate_from_copies(self, epoch: int) -> None:
        """A method that trains copies of the model (G-Blending, as published) estimates before the
        epoch, on rank 0 (its state then reaches every rank)."""
        if self.is_main:
            cfg = self.config
            copies = balancing.TrainerCopies(
                self.model, lambda params: build_optimizer(cfg, params, builder=self.builder), self.optimizer,
                self.train_loader, make_loader(self.data.train, cfg, shuffle=False, device=self.device)[0],
                self.eval_loaders.get("val"), self.device, seed=cfg.seed, epoch=epoch, amp=self.amp)
            balancing.estimate_from_copies(self.method, copies, self.device)
        balancing.share_state(self.method, self.model, self.ctx)

    def _train_epoch(self, epoch: int, log: RunLog) -> dict:
        cfg = self.config
        self.net.train()
        self.train_sampler.set_epoch(epoch)
        set_epoch(self.data.train, epoch)
        if self.method.trains_copies:  # the copies see this epoch's data; the loader is reseeded below
            self._estimate_from_copies(epoch)
            self.net.train()
        self.train_loader.generator.manual_seed(epoch_seed(cfg.seed, epoch))
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        head_sums: dict[str, torch.Tensor] = {}  # per-head training losses, summed on the device
        seen = skipped = 0
        t_start = time.perf_counter()
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (cfg.progress and self.is_main), dynamic_ncols=True)
        for batch in bar:
            step = self._train_step(batch, epoch)
            if step.skip_reason is None:
                n = step.labels.shape[0]
                seen += n
                loss_sum += step.loss * n
                correct += (step.logits.argmax(1) == step.labels).sum()
                for head, value in step.head_losses.items():
                    head_sums[head] = head_sums.get(head, 0) + value * n
            else:
                skipped += 1
            if self.global_step % cfg.trace_every == 0 and log.enabled:
                log.step(self._trace_row(epoch, step))
            self.global_step += 1
            if self.global_step % TRACE_FLUSH_EVERY == 0:
                rows = log.flush_steps()
                if not bar.disable:
                    elapsed = max(time.perf_counter() - t_start, 1e-9)
                    loss = rows[-1]["loss"] if rows else None
                    bar.set_postfix(loss="-" if loss is None else f"{loss:.3f}",
                                    sps=f"{seen * self.ctx.world_size / elapsed:.0f}")
        bar.close()
        seconds = time.perf_counter() - t_start
        heads = list(head_sums)
        if self.ctx.enabled:  # totals over every rank's shard
            totals = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=self.device),
                                  *[head_sums[h] for h in heads]])
            torch.distributed.all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
            head_sums = dict(zip(heads, totals[3:]))
        self.train_head_losses = {h: float(head_sums[h]) / max(seen, 1) for h in heads}
        return {
            **({f"train/loss/{h}": v for h, v in self.train_head_losses.items()} if len(heads) > 1 else {}),
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train/loss": float(loss_sum) / max(seen, 1),
            "train/acc": float(correct) / max(seen, 1),
            "train/samples_per_s": seen / max(seconds, 1e-9),
            "train/seconds": seconds,
            "train/skipped_steps": skipped,
        }

    # ------------------------------------------------------------- one step
    def _train_step(self, batch, epoch: int) -> StepResult:
        """forward -> loss -> backward -> [unscale] -> balancing -> guard -> clip -> step."""
        b = to_device(batch, self.device)
        labels = b["labels"]
        if self.method.owns_step:
            return self._method_step(b, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        out = self._forward(b)
        loss, total, terms = self._loss(out, labels)
        self._backward(total, terms)
        stats, skip_reason = self._after_backward(out, labels, total, epoch)
        self._optimizer_step(skip_reason)
        heads = ("fused", *(getattr(out, "head_logits", None) or {}))
        return StepResult(loss.detach(), out.logits.detach(), labels, stats, skip_reason,
                          {h: terms[h].detach().float() for h in heads})

    def _method_step(self, b: dict, epoch: int) -> StepResult:
        """A step the method owns (``owns_step``), through the loop's own pieces."""
        labels = b["labels"]
        stats_box: list = [None]

        def guard(total: Tensor) -> str | None:
            stats_box[0], reason = self._after_backward(self._last_out, labels, total, epoch)
            return reason

        def forward(batch):
            self._last_out = self._forward(batch)
            return self._last_out

        tools = StepTools(
            forward=forward,
            loss=lambda out, y: self._loss(out, y)[1:],
            backward=lambda total, terms: self._backward(total, dict(terms)),
            guard=guard,
            optimizer_step=self._optimizer_step,
            zero_grad=lambda: self.optimizer.zero_grad(set_to_none=True),
            optimizer=self.optimizer,
            params=[p for p in self.model.parameters() if p.requires_grad],
        )
        out, total, terms, skip_reason = self.method.train_step(b, tools, epoch=epoch)
        heads = ("fused", *(getattr(out, "head_logits", None) or {}))
        return StepResult(terms["fused"].detach(), out.logits.detach(), labels, stats_box[0], skip_reason,
                          {h: terms[h].detach().float() for h in heads if h in terms})

    def _forward(self, b: dict):
        """The model's output: fused logits, per-modality logits, features; the method's
        feature transform (``transforms_features``) is handed to the model's forward."""
        extra = {}
        if self.method.transforms_features:
            transform: Any = self.method.transform_features
            tags = b.get("tag")  # a re-sampled epoch's per-sample tags (begin_epoch), handed to the transform
            extra["transform"] = transform if tags is None else functools.partial(transform, tags=tags)
        with torch.autocast(self.device.type, enabled=self.amp), balancing.forward_context(self.method, self.net):
            out = self.net(b["inputs"], lengths=b["lengths"] or None, labels=b["labels"], **extra)
        _check_output(out)
        return out

    def _sample_keep(self, out) -> Tensor | None:
        """The samples the fused loss may use: the method's (after its transform), else the model's."""
        if self.method.transforms_features:
            return self.method.sample_keep
        return getattr(out, "sample_keep", None)

    def _loss(self, out, labels: Tensor) -> tuple[Tensor, Tensor, dict]:
        """``(loss, total, terms)``: the fused cross-entropy (logged), what is back-propagated
        (the method's total plus the probe heads' own loss on detached features) and the
        method's per-head terms (``"fused"``, each modality's head; ``"probe"``)."""
        extra_inputs = {"features": out.features} if self.method.needs_features else {}
        total, terms = self.method.loss(out.logits, labels, head_logits=getattr(out, "head_logits", None),
                                        sample_keep=self._sample_keep(out), **extra_inputs)
        extra = probe_loss(self.model, out, labels)
        if extra is not None:
            total, terms = total + extra, {**terms, "probe": extra}
        return terms["fused"], total, terms

    def _backward(self, total: Tensor, terms: dict) -> None:
        """The method's backward (``total.backward()``, scaled under AMP, unless it owns it)."""
        self.method.backward(total, terms, scaler=self.scaler)
        balancing.average_other_gradients_(self.method, self.model, self.ctx)  # DDP + MMPareto: the heads

    def _after_backward(self, out, labels: Tensor, total: Tensor, epoch: int):
        """Between backward and the optimizer: unscale (AMP), balance the gradients,
        the non-finite guard, clipping. Returns ``(modulation stats, skip reason)``."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        stats = self._balance_gradients(out, labels, epoch)
        skip_reason = self._nonfinite_guard(total, epoch)
        if skip_reason is None and self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        return stats, skip_reason

    def _balance_gradients(self, out, labels: Tensor, epoch: int):
        """The monitor measures (scores, ratios, k; no gradient changes), then the method's
        ``after_backward`` (OGM/OGM-GE modulate the encoders' gradients here)."""
        stats = None
        keep = self._sample_keep(out)
        weight = None if keep is None else keep.float()
        if self.monitor is not None:
            stats = self.monitor.step(
                modality_logits={n: out.modality_logits[n] for n in self.monitor.modalities},
                labels=labels,
                epoch=epoch,
                sample_weight=weight,
            )
        self.method.after_backward(modality_logits=out.modality_logits, labels=labels, epoch=epoch,
                                   sample_weight=weight)
        return stats

    def _nonfinite_guard(self, total: Tensor, epoch: int) -> str | None:
        """None when the loss and every gradient are finite, else why the step is skipped."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        ok = torch.isfinite(total.detach())
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for g in grads:
            groups.setdefault((g.device, g.dtype), []).append(g)
        for (_, dtype), gs in groups.items():  # max |g| is finite iff every entry is (no overflow, unlike a norm)
            peak = torch.stack(torch._foreach_norm(gs, float("inf")))
            # finite, and small enough that g**2 (Adam's second moment) does not overflow either
            ok = ok & (peak <= overflow_limit(dtype)).all().to(ok.device)
        if self.ctx.enabled:  # every rank takes the same decision
            flag = ok.to(torch.int32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            ok = flag.bool()
        # The step's one device-to-host read: whether optimizer.step() may run must be
        # known on the host, or non-finite values would reach the weights and the
        # optimizer's state (without AMP nothing else would stop them).
        if bool(ok):
            self.consecutive_skips = 0
            return None
        self.consecutive_skips += 1
        what = self._first_nonfinite(total)
        LOGGER.warning("step %d (epoch %d): non-finite %s; step skipped (weights and optimizer state unchanged)",
                       self.global_step, epoch, what)
        if self.consecutive_skips >= self.max_consecutive_skips:
            where = (f"the last checkpoint, {self.run_dir / ckpt_mod.LAST}, is intact"
                     if self.run_dir is not None and (self.run_dir / ckpt_mod.LAST).is_file()
                     else "no checkpoint was written")
            raise NonFiniteError(
                f"training stopped at step {self.global_step} (epoch {epoch}): {self.consecutive_skips} consecutive "
                f"steps had a non-finite loss or gradient (first non-finite tensor of the last one: the {what}); "
                f"{where}. Check the data and lower the learning rate (or enable grad_clip)"
            )
        return f"non-finite {what}"

    def _first_nonfinite(self, total: Tensor) -> str:
        """Name of the first non-finite tensor (host scan; only on a skipped step)."""
        if not bool(torch.isfinite(total.detach())):
            return "loss"
        for name, p in self.model.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"gradient of {name}"
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                peak = float(p.grad.detach().abs().max())
                if peak > overflow_limit(p.grad.dtype):
                    return (f"gradient of {name} (|g| up to {peak:.3g}: its square overflows {p.grad.dtype}, "
                            "the optimizer's second moment would become inf; a method option or loss weight "
                            "that large is the likely cause)")
        return "gradient (on another rank)"

    def _optimizer_step(self, skip_reason: str | None) -> None:
        if skip_reason is None:
            self.method.before_step(self.optimizer)
        if self.scaler is not None:
            if skip_reason is None:
                self.scaler.step(self.optimizer)
            self.scaler.update()  # backs the scale off after an overflow
        elif skip_reason is None:
            self.optimizer.step()
        if skip_reason is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def _trace_row(self, epoch: int, step: StepResult) -> dict:
        """One trace row; its values stay on the device until the next flush."""
        row: dict = {"epoch": epoch, "step": self.global_step, "loss": step.loss}
        stats = step.stats
        if stats is not None:
            for key, values in (("score", stats.scores), ("ratio", stats.ratios), ("coeff", stats.coefficients)):
                for name, value in values.items():
                    row[f"{key}/{name}"] = value
            if not stats.ran:
                row["modulated"], row["skip_reason"] = False, stats.reason
            else:
                assert stats.finite is not None  # OGMGE.step sets it whenever the step ran
                grads_reason = Choice(stats.finite, None, "non-finite gradients")
                row["modulated"] = stats.finite
                row["skip_reason"] = (grads_reason if stats.scores_finite is None
                                      else Choice(stats.scores_finite, grads_reason, "non-finite scores"))
        row.update(self.method.trace_row())
        row.update(self._prediction_trace)  # the prediction's weights (fitted at the last evaluation)
        if step.skip_reason is not None:  # the step's own skip overrides what the modulation says
            row["modulated"], row["skip_reason"] = False, step.skip_reason
        return row

    def _evaluate(self, split: str) -> dict | None:
        """Metrics of ``split`` (the test split, or validation without its side effects)."""
        loader = self.eval_loaders.get(split)
        if loader is None:
            return None
        if split == "val":
            return self._evaluate_validation()[0]
        return evaluate(self.model, loader, self.device, amp=self.amp)

    def _evaluate_validation(self) -> tuple[dict | None, dict | None]:
        """``(metrics, per-head losses for the method)`` on validation: cross-fitted for what is
        fitted on it; refits the prediction's weights (``model.combiner``)."""
        loader = self.eval_loaders.get("val")
        if loader is None:
            return None, None
        outputs = balancing.collect(self.model, loader, self.device, amp=self.amp)
        self._val_outputs = outputs if self.pairs else None  # the other prediction rules read them
        return balancing.evaluate_validation(self.method, self.model, loader, self.device, amp=self.amp,
                                             seed=self.config.seed, outputs=outputs)

    def _end_epoch(self, epoch: int, row: dict, log: RunLog) -> None:
        """After an epoch's steps, in order: scheduler, validation and the method's epoch
        hook, test (when asked), the best epoch, the log, shared state, checkpoint, callbacks."""
        self.scheduler.step()
        improved = False
        if self.is_main:
            val = self._validate_epoch(epoch, row)
            test = self._test_epoch(val)
            self._record_metrics(row, val, test)
            improved = self._update_best(epoch, val)
            row["best"] = improved
            self._pairs_epoch(epoch, row)
            self._log_epoch(row, log, val, test)
        self._add_method_param_groups()  # what end_epoch grew joins the optimizer before the checkpoint
        balancing.share_state(self.method, self.model, self.ctx)
        self._save_epoch(epoch, improved)
        for cb in self.callbacks:
            cb("epoch_end", {"epoch": epoch, "metrics": row, "trainer": self})

    def _validate_epoch(self, epoch: int, row: dict) -> dict | None:
        """Validation metrics; the method's ``end_epoch`` with this epoch's per-head losses."""
        val, val_losses = self._evaluate_validation()
        self.method.end_epoch(epoch, train_losses=self.train_head_losses, val_losses=val_losses)
        row.update({k: float(v) for k, v in self.method.epoch_row().items()})
        self._prediction_trace = balancing.prediction_row(self.model)
        row.update(self._prediction_trace)
        return val

    def _test_epoch(self, val: dict | None) -> dict | None:
        """Per-epoch curves are validation's; test is evaluated once, at the end, on the
        selected checkpoint (``_finish``), unless asked for every epoch. Without a
        validation split the last epoch is kept whatever the curves show, so test is
        logged every epoch then (the only curve there is; it selects nothing)."""
        if self.config.eval_test_every_epoch or val is None:
            return self._evaluate("test")
        return None

    @staticmethod
    def _record_metrics(row: dict, val: dict | None, test: dict | None) -> None:
        for split, metrics in (("val", val), ("test", test)):
            for k, v in (metrics or {}).items():
                row[f"{split}/{k}"] = v

    def _update_best(self, epoch: int, val: dict | None) -> bool:
        """Whether this epoch is the new best, as the stopping rule says (``training/stopping.py``;
        the last epoch without validation)."""
        if self.pairs and epoch > 0 and self.stopping.should_stop(epoch - 1):
            return False  # this rule's selection has ended; the run goes on for the other rules
        decision = self.stopping.update(epoch, val)
        if decision.is_best:
            self.best = {"epoch": epoch, "score": decision.score, "val": val}
        return decision.is_best

    def _pairs_epoch(self, epoch: int, row: dict) -> None:
        """The method's other prediction rules on this epoch's validation outputs, each with its own
        selection; the test split (and the held-out half) is evaluated for a rule whose best epoch this
        is, after that decision: it reports, it selects nothing (``ogmge.training.pairs``)."""
        outputs, self._val_outputs = self._val_outputs, None
        if not self.pairs or outputs is None:
            return
        entries, improved = self.pairs.validate(epoch, outputs)
        row.update(entries)
        if not improved:
            return
        loaders = [("test", self.eval_loaders.get("test"))]
        if self.holdout is not None and self.config.val_selection.get("holdout"):
            loaders.append(("holdout", make_loader(self.holdout, self.config, shuffle=False, device=self.device)[0]))
        for split, loader in loaders:
            if loader is not None:
                self.pairs.record(split, improved, balancing.collect(self.model, loader, self.device, amp=self.amp))

    def _log_epoch(self, row: dict, log: RunLog, val: dict | None, test: dict | None) -> None:
        cfg = self.config
        self.history.append(row)
        log.epoch(row)
        log.sync()  # this epoch's metrics and trace rows are on disk before its checkpoint
        msg = f"epoch {row['epoch'] + 1}/{cfg.epochs}: train loss {row['train/loss']:.4f} acc {row['train/acc']:.3f}"
        if val:
            msg += f" | val acc {val['acc']:.3f}"
        if test:
            msg += f" | test acc {test['acc']:.3f} " + " ".join(
                f"{k.split('/', 1)[1]} {v:.3f}" for k, v in test.items() if k.startswith("modality_acc/"))
        LOGGER.info(msg)

    def _save_epoch(self, epoch: int, improved: bool) -> None:
        rng_all = distrib.gather_objects(ckpt_mod.capture_rng(), self.ctx)
        if self.is_main:
            state = self._checkpoint(epoch, rng_all)
            if self.run_dir is not None:
                ckpt_mod.write_epoch_checkpoints(self.run_dir, state, improved=improved)
            elif improved:
                self.best_state = copy.deepcopy(state["model"])
        distrib.barrier(self.ctx)

    def _checkpoint(self, epoch: int, rng_all: list) -> dict:
        return {
            "format": ckpt_mod.FORMAT,
            "version": ckpt_mod.VERSION,
            "epoch": epoch,
            "global_step": self.global_step,
            "config": self.config.to_dict(),
            "model_spec": self.spec,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_groups": self._param_group_names(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            **({"pairs": self.pairs.state_dict()} if self.pairs else {}),
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
            "method": self.method.state_dict(),
            "rng": {"main": rng_all[0], "per_rank": rng_all},
            "best": dict(self.best),
            "stopping": self.stopping.state_dict(),
            "history": self.history,
            "data_fingerprint": self.fingerprint,
        }

    def _finish(self, log: RunLog, t0: float) -> RunResult:
        cfg = self.config
        selected_by = self.stopping.describe() if self.data.val is not None else "last epoch"
        test = holdout = None
        if self.is_main:
            last = self.history[-1] if self.history else None
            if last is not None and last["epoch"] == self.best["epoch"] == cfg.epochs - 1 and "test/acc" in last:
                test = {k[5:]: v for k, v in last.items() if k.startswith("test/")}
            else:
                if self.best_state is not None:
                    self.model.load_state_dict(self.best_state)
                elif self.run_dir is not None and (self.run_dir / ckpt_mod.BEST).is_file():
                    best = ckpt_mod.load_checkpoint_file(self.run_dir / ckpt_mod.BEST, map_location=self.device)
                    self.model.load_state_dict(best["model"])
                test = self._evaluate("test")
            holdout = self._evaluate_holdout()  # the model holds the selected weights here
            results = {
                "best_epoch": self.best["epoch"],
                "selected_by": selected_by,
                "method": cfg.resolved_method,
                "method_class": cfg.method_class,
                "prediction": cfg.resolved_prediction,
                "val_protocol": self.val_protocol,
                "epochs": cfg.epochs,
                "epochs_run": len(self.history),
                "optimizer": self.optimizer_name,
                "patience": self.patience,
                "stopping": {"rule": self.stopping.id, "min_epochs": self.stopping.min_epochs,
                             "window": getattr(self.stopping, "window", 1)},
                "val": self.best["val"],
                "test": test,
                **({"holdout": holdout, "val_selection": cfg.val_selection} if holdout is not None else {}),
                **({"pairs": self.pairs.results()} if self.pairs else {}),
                "modalities": list(self.data.modalities),
                "class_names": self.data.class_names,
            }
            if self.run_dir is not None:
                RunResults.from_dict(results).write(self.run_dir / RESULTS)
            if test is not None:
                LOGGER.info("selected epoch %d (%s): test acc %.4f", self.best["epoch"] + 1, selected_by, test["acc"])
        return RunResult(
            config=cfg,
            model=self.model,
            run_dir=self.run_dir,
            history=self.history,
            best_epoch=self.best["epoch"],
            selected_by=selected_by,
            val_metrics=self.best["val"],
            test_metrics=test,
            start_epoch=self.start_epoch,
            resumed=self.resume,
            seconds=time.perf_counter() - t0,
            class_names=self.data.class_names,
            holdout_metrics=holdout,
            pairs=self.pairs.results() if self.pairs and self.is_main else {},
        )

    def _evaluate_holdout(self) -> dict | None:
        """The held-out half, once, on the selected checkpoint (what it fitted, it fitted on half A)."""
        if self.holdout is None or not self.config.val_selection.get("holdout"):
            return None
        loader = make_loader(self.holdout, self.config, shuffle=False, device=self.device)[0]
        return evaluate(self.model, loader, self.device, amp=self.amp)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    datasets: DataBundle | None = None,
    model: ModelArg = None,
    callbacks: Sequence[Callback] = (),
    overwrite: bool = False,
    allow_data_change: bool = False,
    method: MethodArg = None,
    dependencies: Mapping[str, str] | None = None,
) -> RunResult:
    """Train (or, with ``resume=True``, continue the run in ``config.out``).

    ``datasets`` and ``model`` (a module, or ``fn(datasets, config) -> module``)
    replace the ones the config would build, for custom models and data.
    ``callbacks`` are called as ``cb("epoch_end", {"epoch", "metrics", "trainer"})``
    after each epoch's checkpoint is written. ``overwrite`` empties ``config.out``
    first when it is an earlier run (``ogmge.training.rundir``); ``allow_data_change``
    lets a resumed run continue on data whose fingerprint differs from the checkpoint's.
    ``method``: a :class:`~ogmge.methods.BalancingMethod` object (used as is; the model is
    built for its class's declarations) or class (built from the config's options),
    registered or not; the saved config records its name and ``module:QualName``.
    ``dependencies``: ``{key: run dir}`` of earlier runs the method builds on (default: the
    config's ``dependencies``, what ``compare`` sets), handed to it as ``ctx.dependencies``
    (``{"alone/<modality>": run_dir}`` for the modality-alone runs: teachers, warm starts);
    a method with ``loads_alone_encoders`` starts its encoders from them; give them again on resume.
    """
    return Trainer(config, resume=resume, datasets=datasets, model=model, callbacks=callbacks,
                   overwrite=overwrite, allow_data_change=allow_data_change, method=method,
                   dependencies=dependencies).fit()


def _method_settings(method: MethodArg, config: TrainConfig) -> dict:
    """The config settings that record a method given to the trainer (name, class, options)."""
    if method is None:
        cls = config.method_cls
        return {"method_class": qualname(cls)} if "+" not in cls.name else {}
    cls = method if isinstance(method, type) else type(method)
    if not (isinstance(cls, type) and issubclass(cls, BalancingMethod)):
        raise TypeError(f"method must be a BalancingMethod object or class, got {method!r}")
    method_registry.remember(cls)
    if isinstance(method, BalancingMethod):
        options = method.current_options()
    else:
        given = config.method if isinstance(config.method, dict) else {}
        options = {k: v for k, v in given.items() if k != "name"}
    paper = {o.name for o in cls.options if o.paper_key}
    spec = {"name": cls.name, **{k: v for k, v in options.items() if k not in paper}}
    out: dict = {"method": spec, "method_class": qualname(cls)}
    for o in cls.options:
        if o.paper_key and o.name in options:
            out[o.paper_key] = options[o.name]
    return out


logging.getLogger("ogmge").addHandler(logging.NullHandler())
