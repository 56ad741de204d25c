"""Checkpoints: atomic writes (temporary file + ``os.replace``), loading, RNG states.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "ogmge-checkpoint", "version": 2, "epoch": last completed epoch (0-based),
     "config": TrainConfig as a dict, "model_spec": {...}, "model": state_dict,
     "optimizer", "scheduler", "scaler", "modulator", "method", "extra_states", "rng", "best", ...}

Everything in it is plain data and tensors, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "ogmge-checkpoint"
#: 2: models may carry per-modality heads / an ensemble buffer / a feature transform
#: (balancing methods), and ``"method"`` holds the method's state. Version 1 still loads.
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
BEST = "best.pt"
LAST = "last.pt"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    If anything fails before the rename, ``path`` keeps its previous content
    and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
    return ckpt


# ------------------------------------------------------------------------ RNG
def capture_rng() -> dict:
    """Python, NumPy, torch (CPU and every CUDA device) generator states."""
    py = random.getstate()
    np_state = np.random.get_state()
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
