"""Tiny models and batches shared by the model tests."""

from __future__ import annotations

import torch

from ogmge.contracts import ModalitySpec
from ogmge.methods import OPMMethod
from ogmge.models import build_model
from ogmge.modulation import OPM

NUM_CLASSES = 4
DIM = 8


def vector_specs(names=("audio", "visual"), dim: int = DIM) -> dict[str, ModalitySpec]:
    return {n: ModalitySpec(n, "vector", (dim,)) for n in names}


def fusion_options(fusion: str) -> dict:
    return {"d_model": 16, "heads": 2} if fusion == "attention" else {}


def tiny_model(fusion: str, estimator=None, *, names=("audio", "visual"), opm=None, out_dim: int = 16):
    """``opm``: an ``OPM`` (or True for the defaults) held by the model as its feature transform
    (``OPMMethod``); the model's forward then applies it in training, as the trainer does."""
    transform = None
    if opm is not None and opm is not False:
        transform = OPMMethod(OPM() if opm is True else opm)
    return build_model(
        vector_specs(names), num_classes=NUM_CLASSES, fusion=fusion, estimator=estimator,
        hidden=16, out_dim=out_dim, feature_transform=transform, fusion_options=fusion_options(fusion),
    )


def opm_masks(model):
    """The masks OPM drew in ``model``'s last training forward (None if it drew none)."""
    return model.feature_transform.masks


def dominant_batch(batch: int, generator: torch.Generator, *, strong: str = "audio", weak: str = "visual"):
    """``strong``'s input carries the label (scaled one-hot plus a little noise); ``weak``'s is pure noise."""
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    signal = torch.zeros(batch, DIM)
    signal[torch.arange(batch), y] = 3.0
    signal = signal + 0.1 * torch.randn(batch, DIM, generator=generator)
    noise = torch.randn(batch, DIM, generator=generator)
    return {strong: signal, weak: noise}, y
