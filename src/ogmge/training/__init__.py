"""Training, evaluation, checkpoints, logs and distributed runs (layer 4).

``train(config)`` runs the loop of :mod:`ogmge.training.loop`; ``load_run``,
``load_checkpoint``, ``evaluate_checkpoint`` and ``predict`` mirror
``ogmge eval``; ``plot_runs`` mirrors ``ogmge plot``. See docs/training.md.
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
    "plot_runs",
    "train",
    "yaml_key",
]


def __getattr__(name):
    if name in ("plot_runs", "comparison_figure"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(name)
