"""Three vector modalities as a bring-your-own file, and ``ogmge train`` on it through the CLI's ``main``:
what the method tests share to train a method by name, then read its results and evaluate it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main

#: The model options the CLI runs pass with ``--set``.
MODEL = "model_options={hidden: 8, out_dim: 8}"


def three_modality_npz(where: Path, n: int = 60) -> Path:
    """``where/three.npz``: ``n`` samples, 3 classes; ``a`` (5 wide) informative, ``b`` (4) weakly, ``c`` (3) not."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    mods = {"a": rng.normal(size=(n, 5)).astype(np.float32) + labels[:, None],
            "b": rng.normal(size=(n, 4)).astype(np.float32) + 0.3 * labels[:, None],
            "c": rng.normal(size=(n, 3)).astype(np.float32)}
    return save_byo(where / "three.npz", mods, labels, kinds={k: "vector" for k in mods})


def train_cli(data: Path, method: str, out: Path, *extra: str, epochs: int, batch_size: int = 8,
              lr: float | None = 0.01, model: str = MODEL) -> int:
    """The exit code of ``ogmge train --data DATA --method METHOD ... --out OUT`` on the CPU without progress;
    ``extra`` are more flags (``--method-opt k=v``, ``--prediction``, ...); ``lr=None`` leaves the default."""
    args = ["train", "--data", str(data), "--method", method, *extra, "--epochs", str(epochs),
            "--batch-size", str(batch_size)]
    if lr is not None:
        args += ["--lr", str(lr)]
    return main([*args, "--set", model, "--device", "cpu", "--no-progress", "--out", str(out)])


def results(run: Path) -> dict:
    """A run directory's ``results.json``."""
    return json.loads((run / "results.json").read_text())


def evaluates(checkpoint: Path) -> bool:
    """Whether ``ogmge eval --checkpoint CHECKPOINT`` exits 0."""
    return main(["eval", "--checkpoint", str(checkpoint)]) == 0
