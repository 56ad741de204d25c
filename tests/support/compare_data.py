"""A tiny bring-your-own file and configuration for comparisons (seconds per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ogmge.data.byo import save_byo


def tiny_npz(path: Path) -> Path:
    """60 samples, 3 classes, two vector modalities (``a`` informative, ``b`` weakly), a split column."""
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    a = rng.normal(size=(n, 6)).astype(np.float32) + labels[:, None]
    b = rng.normal(size=(n, 4)).astype(np.float32) + 0.3 * labels[:, None]
    split = np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 6)
    return save_byo(path, {"a": a, "b": b}, labels, kinds={"a": "vector", "b": "vector"}, split=split)


def tiny_config(data: Path, **changes) -> dict:
    return {"dataset": "byo", "data": str(data), "epochs": 1, "batch_size": 8, "lr": 0.01, "device": "cpu",
            "model_options": {"hidden": 4, "out_dim": 8}, "progress": False, **changes}
