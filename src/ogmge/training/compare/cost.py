"""The cost estimate printed before a comparison runs: the real trainer, a few steps.

:func:`estimate_run_seconds` builds the run's data, then runs the real ``Trainer``
(model, optimizer, balancing method and all its hooks) for two epochs of ``steps``
batches each on one thread; the second epoch's training seconds give the time of
one step (the first is a warm-up). A method may declare what it spends per epoch
beyond its training steps (copies, re-clustering, extra passes) as a method
``extra_steps_per_epoch(train_steps, val_steps) -> float`` in training-step
equivalents; it is added. Evaluation counts as a third of a step per validation
batch. An upper bound when early stopping ends runs sooner.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..config import TrainConfig


@dataclass(frozen=True)
class CostEstimate:
    """What the estimate measured and declared; ``run_seconds`` combines them."""

    setup_seconds: float      # building the data
    step_seconds: float       # one training step of the run's method (measured)
    train_steps: int          # training steps per epoch
    val_steps: int            # validation batches per epoch
    extra_steps: float        # the method's declared extra cost per epoch, in steps
    epochs: int
    modalities: tuple[str, ...]

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * (self.train_steps + self.extra_steps + self.val_steps / 3)

    @property
    def run_seconds(self) -> float:
        return self.setup_seconds + self.epochs * self.epoch_seconds


def declared_extra_steps(method, train_steps: int, val_steps: int) -> float:
    """The method's declared extra per-epoch cost in training steps (0 when it declares none)."""
    declare = getattr(method, "extra_steps_per_epoch", None)
    if declare is None:
        return 0.0
    value = float(declare(train_steps, val_steps))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{type(method).__name__}.extra_steps_per_epoch must be a finite number >= 0, "
                         f"got {value!r}")
    return value


def estimate_cost(config: TrainConfig, *, steps: int = 3) -> CostEstimate:
    """Measure one run of ``config`` (module docstring)."""
    import torch

    from ...data.splitting import subset
    from ..data import DataBundle, build_datasets
    from ..loop import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        data = build_datasets(config)
        setup = time.perf_counter() - t0
        batch = config.batch_size
        train_steps = math.ceil(len(data.train) / batch)
        val_steps = 0 if data.val is None else math.ceil(len(data.val) / (config.eval_batch_size or batch))
        n = min(len(data.train), steps * batch)
        small = DataBundle(
            train=subset(data.train, range(n)),
            val=None if data.val is None else subset(data.val, range(min(len(data.val), batch))),
            test=None,
        )
        trial = config.replace(out=None, epochs=2, progress=False, tensorboard=False)
        trainer = Trainer(trial, datasets=small)
        result = trainer.fit()
        step = float(result.history[-1]["train/seconds"]) / max(1, math.ceil(n / batch))
        extra = declared_extra_steps(trainer.method, train_steps, val_steps)
        return CostEstimate(setup, step, train_steps, val_steps, extra, config.epochs, tuple(data.modalities))
    finally:
        torch.set_num_threads(threads)


def estimate_run_seconds(config: TrainConfig, *, steps: int = 3) -> tuple[float, list[str]]:
    """``(seconds of one full run, data modalities)`` (see :func:`estimate_cost`)."""
    cost = estimate_cost(config, steps=steps)
    return cost.run_seconds, list(cost.modalities)


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


__all__ = ["CostEstimate", "declared_extra_steps", "estimate_cost", "estimate_run_seconds", "fmt_seconds"]
