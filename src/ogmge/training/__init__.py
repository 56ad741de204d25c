"""Training, evaluation, checkpoints, logs and distributed runs (layer 4).

``train(config)`` runs the loop of :mod:`ogmge.training.loop`; ``load_run``,
``load_checkpoint``, ``evaluate_checkpoint`` and ``predict`` mirror
``ogmge eval``. Plotting (``ogmge plot``) is an interface: ``ogmge.interfaces.plots``.
See docs/training.md.
"""

from .api import LoadedCheckpoint, Run, evaluate_checkpoint, load_checkpoint, load_run, predict
from .checkpoint import atomic_save, load_checkpoint_file
from .config import TrainConfig, cli_flag, list_presets, yaml_key
from .data import DataBundle, EpochSampler, build_datasets, holdout
from .loop import RunResult, Trainer, train
from .metrics import evaluate

__all__ = [
    "DataBundle",
    "EpochSampler",
    "LoadedCheckpoint",
    "Run",
    "RunResult",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "build_datasets",
    "cli_flag",
    "evaluate",
    "evaluate_checkpoint",
    "holdout",
    "list_presets",
    "load_checkpoint",
    "load_checkpoint_file",
    "load_run",
    "predict",
    "train",
    "yaml_key",
]


def __getattr__(name):
    if name in ("plot_runs", "comparison_figure", "plots"):
        raise AttributeError(
            f"ogmge.training.{name} moved to ogmge.interfaces.plots (plotting is an interface, layer 5): "
            f"use `from ogmge.interfaces.plots import {'plot_runs' if name == 'plots' else name}`"
        )
    raise AttributeError(f"module 'ogmge.training' has no attribute {name!r}")
