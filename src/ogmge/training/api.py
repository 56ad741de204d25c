"""Python API mirroring the CLI: load a run or a checkpoint, evaluate, predict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ogmge.models import predict as models_predict

from . import checkpoint as ckpt_mod
from .config import TrainConfig, legacy_note
from .data import build_datasets, make_loader
from .factory import build_model_from_config, specs_from
from .fingerprint import check_same_data, check_same_shapes, data_fingerprint
from .logs import CONFIG, METRICS, RESULTS, TRACE, read_jsonl
from .metrics import evaluate


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, with the run's config and the raw checkpoint."""

    model: nn.Module
    config: TrainConfig
    epoch: int
    class_names: list[str]
    checkpoint: dict = field(repr=False)


@dataclass
class Run:
    """A run directory: its config, per-epoch metrics, step trace and results."""

    run_dir: Path
    config: TrainConfig
    metrics: list[dict]
    results: dict | None

    @property
    def name(self) -> str:
        return self.config.name or self.run_dir.name

    def trace(self) -> list[dict]:
        return read_jsonl(self.run_dir / TRACE)

    def checkpoint_path(self, which: str = "best") -> Path:
        if which not in ("best", "last"):
            raise ValueError(f"which must be 'best' or 'last', got {which!r}")
        return ckpt_mod.best_checkpoint_path(self.run_dir) if which == "best" else self.run_dir / ckpt_mod.LAST

    def load_model(self, which: str = "best", *, map_location="cpu", model: nn.Module | None = None) -> LoadedCheckpoint:
        return load_checkpoint(self.checkpoint_path(which), map_location=map_location, model=model)


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory written by ``train`` (``ogmge train --out RUN_DIR``)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG})")
    config = TrainConfig.load(run_dir / CONFIG)
    results = None
    if (run_dir / RESULTS).is_file():
        results = json.loads((run_dir / RESULTS).read_text())
    return Run(run_dir, config, read_jsonl(run_dir / METRICS), results)


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", model: nn.Module | None = None
) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (or load its weights into ``model``).

    A run trained with a custom model (``train(..., model=...)``) needs ``model``.
    """
    ckpt = ckpt_mod.load_checkpoint_file(path, map_location=map_location)
    config = TrainConfig.from_dict(ckpt["config"])
    spec = ckpt["model_spec"]
    if model is None:
        if spec["builder"] == "custom":
            raise ValueError(f"{path} was trained with a custom model; pass model= to load its weights into it")
        model, _ = build_model_from_config(config, specs_from(spec), spec["num_classes"], builder=spec["builder"])
    model.load_state_dict(ckpt["model"])  # with its helpers' state; an older "extra_states" copy is ignored
    model.to(map_location).eval()
    return LoadedCheckpoint(model, config, int(ckpt["epoch"]), list(spec["class_names"]), ckpt)


def evaluate_checkpoint(
    path: str | Path,
    *,
    split: str = "test",
    overrides: Mapping | None = None,
    device: str = "cpu",
    model: nn.Module | None = None,
    datasets=None,
    allow_data_change: bool = False,
) -> dict:
    """Metrics of a checkpoint on a split of its run's data (``ogmge eval``).

    ``overrides`` may move the data (``data_root``, ``split_file``, ``data``). Data
    whose fingerprint differs from the one the checkpoint recorded are refused unless
    ``allow_data_change``; data of other modalities, feature sizes or class count always are.
    """
    loaded = load_checkpoint(path, map_location=device, model=model)
    config = loaded.config.replace(**dict(overrides or {}))
    if datasets is None:
        check_same_data(loaded.checkpoint.get("data_fingerprint"), data_fingerprint(config),
                        what=f"cannot evaluate {path}", allow=allow_data_change)
    bundle = datasets if datasets is not None else build_datasets(config)
    ds = getattr(bundle, split)
    if ds is None:
        raise ValueError(f"the run's data have no {split!r} split")
    if len(ds) == 0:
        raise ValueError(f"cannot evaluate {path}: the {split} split is empty (0 samples)")
    check_same_shapes(loaded.checkpoint["model_spec"], bundle, what=f"cannot evaluate {path}")
    loader, _ = make_loader(ds, config, shuffle=False, device=device)
    metrics = evaluate(loaded.model, loader, torch.device(device))
    note = legacy_note(dict(loaded.checkpoint.get("config") or {}))
    if note:
        metrics["behaviour"] = note
    return metrics


def predict(
    model: nn.Module | LoadedCheckpoint,
    inputs: Mapping[str, Tensor],
    *,
    lengths: Mapping[str, Tensor] | None = None,
) -> dict:
    """Class probabilities and predictions for a batch ``{modality: (B, ...)}``:
    :func:`ogmge.models.predict` (eval mode, no gradients) as a dict of CPU tensors.

    Returns ``probs (B, C)``, ``pred (B,)``, ``modality_probs {m: (B, C)}`` and
    ``modality_pred {m: (B,)}`` (each modality from the model's estimator).
    """
    if isinstance(model, LoadedCheckpoint):
        model = model.model
    out = models_predict(model, inputs, lengths)
    modality_probs = {n: p.cpu() for n, p in out.modality_probabilities.items()}
    return {
        "probs": out.probabilities.cpu(),
        "pred": out.classes.cpu(),
        "modality_probs": modality_probs,
        "modality_pred": {n: p.argmax(dim=-1) for n, p in modality_probs.items()},
    }
