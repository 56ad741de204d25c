"""Checkpoints: atomic writes (temporary file + ``os.replace``), the order of an epoch's
writes, loading and RNG states.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "ogmge-checkpoint", "version": 3, "epoch": last completed epoch (0-based),
     "config": TrainConfig as a dict, "model_spec": {...}, "model": state_dict,
     "optimizer", "optimizer_groups", "scheduler", "scaler", "monitor", "method", "rng", "best", ...}

``"optimizer_groups"``: each optimizer group's parameter names, so a resumed run re-adds
the groups a method added during training (``new_param_groups``) before loading
``"optimizer"`` (absent in older checkpoints: no groups were added then).

``"method"`` is the whole state of the balancing method (``method.state_dict()``),
``"monitor"`` the OGM-GE monitor's; the prediction's fitted weights are in
``"model"`` (``combiner.weights``). :func:`migrate` reads versions 1 and 2, where
the method's state lived elsewhere: the top-level ``"modulator"`` (OGM/OGM-GE), the
model's extra state (``"opm"``, ``"feature_transform"``) and the model buffer
``ensemble_weights``; they become ``"legacy_method_state"``, which the trainer hands
to ``method.load_legacy_state``. Older checkpoints also carry the helpers' state
under ``"extra_states"``; loading ignores that copy.

Everything in it is plain data and tensors, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ogmge.io_utils import TMP_TAG, atomic_write, fsync_dir

FORMAT = "ogmge-checkpoint"
#: 2: models may carry per-modality heads / an ensemble buffer / a feature transform
#: (balancing methods), and ``"method"`` holds the method's state. Version 1 still loads.
#: 3: the method's whole state in ``"method"``, the OGM-GE monitor's in ``"monitor"``, the
#: prediction's weights in the model's combiner (``migrate`` reads 1 and 2).
VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
BEST = "best.pt"
LAST = "last.pt"
#: ``best.pt`` of an epoch whose ``last.pt`` is not yet written (see ``write_epoch_checkpoints``).
PENDING_PREFIX = ".best-pending-"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (``ogmge.io_utils.atomic_write``).

    If anything fails before the rename, ``path`` keeps its previous content
    and the temporary file is removed.
    """
    return atomic_write(path, lambda fh: torch.save(obj, fh))


# --------------------------------------------------------- writing an epoch
def pending_best_name(epoch: int) -> str:
    """The name ``best.pt`` has while the epoch that produced it is not yet committed."""
    return f"{PENDING_PREFIX}{epoch}.pt"


def write_epoch_checkpoints(run_dir: Path, state: dict, *, improved: bool) -> None:
    """Write one epoch's checkpoints so that no kill point leaves them disagreeing.

    ``last.pt`` is the commit point and records the best epoch (``state["best"]``):
    a new best is written first as ``.best-pending-<epoch>.pt``, then ``last.pt``,
    then the pending file is renamed to ``best.pt``. A kill before ``last.pt`` leaves
    the previous ``last.pt``/``best.pt`` pair; a kill after it leaves a pending file
    that ``settle_best`` promotes (``last.pt`` names its epoch as the best).
    """
    epoch = int(state["epoch"])
    pending = run_dir / pending_best_name(epoch)
    if improved:
        atomic_save(state, pending)
    atomic_save(state, run_dir / LAST)
    if improved:
        os.replace(pending, run_dir / BEST)
        fsync_dir(run_dir)


def settle_best(run_dir: Path, best_epoch: int | None) -> None:
    """Finish an interrupted ``write_epoch_checkpoints``: promote the pending best that
    ``last.pt`` committed (``best_epoch``), delete pending files it did not commit."""
    for path in sorted(run_dir.glob(f"{PENDING_PREFIX}*.pt")):
        try:
            epoch = int(path.stem[len(PENDING_PREFIX):])
        except ValueError:
            continue
        if best_epoch is not None and epoch == best_epoch:
            os.replace(path, run_dir / BEST)
        else:
            path.unlink(missing_ok=True)
    for tmp in run_dir.glob(f".*{TMP_TAG}*"):  # temporary files of a killed write
        tmp.unlink(missing_ok=True)
    fsync_dir(run_dir)


def best_checkpoint_path(run_dir: str | Path) -> Path:
    """``best.pt`` of a run, or the pending best that ``last.pt`` already committed
    (a run killed between the two writes of an epoch), without changing the directory."""
    run_dir = Path(run_dir)
    pending = sorted(run_dir.glob(f"{PENDING_PREFIX}*.pt"))
    if pending and (run_dir / LAST).is_file():
        best = (load_checkpoint_file(run_dir / LAST).get("best") or {}).get("epoch")
        for path in pending:
            if path.name == pending_best_name(best if best is not None else -1):
                return path
    return run_dir / BEST


def load_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by the trainer; clear errors when missing or foreign."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a directory; give a checkpoint file such as {path / BEST}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, ...
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ogmge training checkpoint")
    if ckpt.get("version") not in SUPPORTED_VERSIONS:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is not supported "
                         f"(expected one of {SUPPORTED_VERSIONS})")
    return migrate(ckpt)


def migrate(ckpt: dict) -> dict:
    """A checkpoint of version 1 or 2 in today's layout (see the module docstring)."""
    if int(ckpt.get("version", VERSION)) >= 3:
        return ckpt
    ckpt = dict(ckpt)
    model = dict(ckpt.get("model") or {})
    extra = model.get("_extra_state")
    extra = dict(extra) if isinstance(extra, dict) else {}
    legacy = {"modulator": ckpt.pop("modulator", None), "opm": extra.pop("opm", None),
              "feature_transform": extra.pop("feature_transform", None)}
    if "_extra_state" in model:
        model["_extra_state"] = extra
    if "ensemble_weights" in model:
        model["combiner.weights"] = model.pop("ensemble_weights")
    ckpt["model"] = model
    ckpt["monitor"] = legacy["modulator"]  # the measurement's noise streams (unused in Normal mode)
    ckpt["legacy_method_state"] = legacy
    ckpt["method"] = ckpt.get("method") or {}
    ckpt["version"] = VERSION
    return ckpt


# ------------------------------------------------------------------------ RNG
def capture_rng() -> dict:
    """Python, NumPy, torch (CPU and every CUDA device) generator states."""
    py = random.getstate()
    np_state: Any = np.random.get_state()  # the legacy tuple
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1].numpy(), dtype=np.uint32), *npst[2:]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in states])


def _plain(x):
    return x.item() if hasattr(x, "item") else x


#: Key prefix of a modality-alone run in ``ctx.dependencies`` (``"alone/<modality>"``).
ALONE_PREFIX = "alone/"


def load_alone_encoders_(model: nn.Module, dependencies: Mapping[str, str], *, which: str = BEST) -> None:
    """Copy each modality's encoder weights from its modality-alone run (``dependencies
    ["alone/<modality>"]``, that run's ``best.pt``) into ``model.encoders`` in place.
    Errors name the missing run, file or weights; shapes must match (strict load)."""
    encoders = getattr(model, "encoders", None)
    if encoders is None:
        raise TypeError("warm starts need a model exposing model.encoders")
    missing = [ALONE_PREFIX + n for n in encoders if ALONE_PREFIX + n not in dependencies]
    if missing:
        raise ValueError(f"warm start: no modality-alone run for {missing} (dependencies); "
                         f"given {sorted(dependencies)}")
    for name, encoder in encoders.items():
        path = Path(dependencies[ALONE_PREFIX + name]) / which
        state = load_checkpoint_file(path)["model"]
        prefix = f"encoders.{name}."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"warm start: {path} holds no weights of encoder {name!r}")
        try:
            encoder.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"warm start: encoder {name!r} does not match {path}: {exc}") from None
