"""Tiny stand-ins honouring the contracts (docs/architecture.md): a vector
dataset with two modalities and a two-encoder classifier with a concat head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from torch import nn

from ogmge.contracts import ModalitySpec
from ogmge.training import DataBundle, TrainConfig, load_checkpoint_file, train
from ogmge.training.factory import build_model_from_config


class TinyDataset(torch.utils.data.Dataset):
    """``n`` samples, 3 classes: modality "a" carries the label clearly, "b" faintly."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        centers = torch.randn(3, 6, generator=g)
        self.a = centers[self.labels] * 2 + torch.randn(n, 6, generator=g)
        self.b = centers[self.labels] * 0.5 + torch.randn(n, 6, generator=g)
        self.modalities = {"a": ModalitySpec("a", "vector", (6,)), "b": ModalitySpec("b", "vector", (6,))}
        self.num_classes = 3
        self.class_names = ["x", "y", "z"]
        self.targets = self.labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"inputs": {"a": self.a[i], "b": self.b[i]}, "label": int(self.labels[i])}


@dataclass(frozen=True)
class Out:
    logits: torch.Tensor
    modality_logits: dict
    features: dict
    sample_keep: torch.Tensor | None = None


class TinyModel(nn.Module):
    """Encoders ``a``/``b`` (Linear-ReLU-Dropout), concat head, linear-split per-modality logits."""

    def __init__(self, names=("a", "b"), classes: int = 3) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2)) for n in names}
        )
        self.head = nn.Linear(8 * len(names), classes)

    def forward(self, inputs, lengths=None, labels=None):
        feats = {n: enc(inputs[n]) for n, enc in self.encoders.items()}
        logits = self.head(torch.cat(list(feats.values()), dim=1))
        n = len(feats)
        parts = self.head.weight.split(8, dim=1)
        mod = {name: (f @ w.T + self.head.bias / n).detach() for (name, f), w in zip(feats.items(), parts)}
        return Out(logits, mod, feats)


def tiny_bundle(val: bool = True) -> DataBundle:
    return DataBundle(TinyDataset(48, 1), TinyDataset(15, 2) if val else None, TinyDataset(30, 3))


def tiny_model(bundle, config):
    return TinyModel(tuple(bundle.modalities))


def generic_model(bundle, config):
    """A ``train`` model function: the configured model from the generic builder."""
    return build_model_from_config(config, bundle.modalities, bundle.num_classes, builder="generic")[0]


def tiny_config(tmp_path, **changes) -> TrainConfig:
    values = dict(
        epochs=4, batch_size=16, lr=0.05, optimizer="sgd", modulation="OGM_GE", alpha=0.5,
        modulate_params="weights", lr_step=2, seed=3, device="cpu", progress=False,
        out=str(tmp_path / "run"), name="tiny",
    )
    values.update(changes)
    return TrainConfig(**values)


#: Metrics fields that measure time, not what a run computed.
TIMING = ("train/seconds", "train/samples_per_s")


class Stop(Exception):
    """Raised by :func:`stop_after` to interrupt a run after an epoch's checkpoint."""


def stop_after(index):
    """A ``train`` callback that interrupts the run at the end of epoch ``index``."""
    def cb(event, info):
        if event == "epoch_end" and info["epoch"] == index:
            raise Stop
    return cb


def metric_rows(run_dir):
    """``metrics.jsonl`` rows without the timing fields."""
    from ogmge.training import load_run

    return [{k: v for k, v in r.items() if k not in TIMING} for r in load_run(run_dir).metrics]


class Resumed(NamedTuple):
    """The runs of :func:`resumed_equals_uninterrupted` and their ``last.pt`` checkpoints (``a``: uninterrupted)."""

    full: object
    resumed: object
    a: dict
    b: dict


def resumed_equals_uninterrupted(cfg, where, stop: int = 1, model=None) -> Resumed:
    """Trains ``cfg(where / "full")`` on :func:`tiny_bundle`, then ``cfg(where / "cut")`` interrupted after epoch
    ``stop`` and resumed; asserts that both end with the same model tensors and metric rows, and returns the
    runs and checkpoints for a method's own checks."""
    full = train(cfg(where / "full"), datasets=tiny_bundle(), model=model)
    cut = cfg(where / "cut")
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), model=model, callbacks=[stop_after(stop)])
    resumed = train(cut, resume=True, datasets=tiny_bundle(), model=model)
    a, b = load_checkpoint_file(full.run_dir / "last.pt"), load_checkpoint_file(resumed.run_dir / "last.pt")
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    return Resumed(full, resumed, a, b)
