"""Tiny multimodal models for the method tests: MLP encoders with BatchNorm, biases and a
parameter whose gradient is exactly zero (``dead``)."""

from __future__ import annotations

import torch
from torch import nn

from ogmge.models import ConcatFusion, MultimodalClassifier

DIM, FEAT, CLASSES = 6, 5, 3


class TinyEncoder(nn.Module):
    def __init__(self, in_dim: int = DIM, out_dim: int = FEAT) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, 7)
        self.bn = nn.BatchNorm1d(7)
        self.fc2 = nn.Linear(7, out_dim)
        self.dead = nn.Parameter(torch.ones(2))  # its gradient is 0 for every loss
        self.out_dim = out_dim

    def forward(self, x, lengths=None):
        return self.fc2(torch.tanh(self.bn(self.fc1(x)))) + 0.0 * self.dead.sum()


def tiny_model(names=("audio", "visual", "text"), *, heads=True, prediction="fused", feature_transform=None,
               dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    encoders = {n: TinyEncoder() for n in names}
    fusion = ConcatFusion({n: FEAT for n in names}, CLASSES)
    model = MultimodalClassifier(encoders, fusion, heads=heads, prediction=prediction,
                                 feature_transform=feature_transform)
    return model.to(dtype)


def batch(names=("audio", "visual", "text"), n=16, *, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, DIM, generator=g, dtype=dtype) for m in names}
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return x, y
