"""The chunked GE-noise path computes g <- k g + (sigma + 1e-8) z exactly, z drawn chunk by
chunk from the modulator's generator, whatever the chunk size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ogmge import OGMGE
from ogmge.modulation import ogmge as ogmge_mod


def encoders(seed=0):
    g = torch.Generator().manual_seed(seed)
    enc = {}
    for name, shapes in (("audio", [(8, 1, 3, 3), (16, 8, 3, 3), (4, 16, 1, 1)]), ("visual", [(6, 3, 5, 5), (2, 6, 3, 3)])):
        ps = [nn.Parameter(torch.zeros(s)) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        enc[name] = ps
    return enc


def logits():
    y = torch.arange(16) % 4
    strong = torch.full((16, 4), -2.0)
    strong[torch.arange(16), y] = 2.0
    return {"audio": strong, "visual": torch.zeros(16, 4)}, y


@pytest.mark.parametrize("limit", [1, 100, 1200, 1 << 20])
def test_chunked_noise_is_the_equation(limit, monkeypatch):
    monkeypatch.setattr(ogmge_mod, "NOISE_CHUNK_CPU", limit)
    enc = encoders()
    before = {n: [p.grad.clone() for p in ps] for n, ps in enc.items()}
    mod = OGMGE(enc, mode="OGM_GE", alpha=0.8, seed=11)
    lg, y = logits()
    stats = mod.step(modality_logits=lg, labels=y, epoch=0)
    gen = torch.Generator().manual_seed(11)
    for name in ("audio", "visual"):
        k = stats.coefficients[name]
        gs = before[name]
        for chunk in ogmge_mod._chunks(gs, limit):
            z = torch.randn(sum(g.numel() for g in chunk), generator=gen)
            for g, v in zip(chunk, z.split([g.numel() for g in chunk])):
                i = next(j for j, h in enumerate(gs) if h is g)
                expected = k * g + (g.std() + 1e-8) * v.view(g.shape)
                assert torch.allclose(enc[name][i].grad, expected, rtol=1e-6, atol=1e-7), (name, i, limit)
    assert float(stats.coefficients["audio"]) < 1 == float(stats.coefficients["visual"])


def test_chunks_group_consecutive_tensors_up_to_the_limit():
    ts = [torch.zeros(n) for n in (3, 4, 10, 2, 2)]
    sizes = [[t.numel() for t in c] for c in ogmge_mod._chunks(ts, 7)]
    assert sizes == [[3, 4], [10], [2, 2]]
    assert ogmge_mod.noise_chunk(torch.device("cpu")) == ogmge_mod.NOISE_CHUNK_CPU
    assert ogmge_mod.noise_chunk(torch.device("meta")) == ogmge_mod.NOISE_CHUNK


def test_the_scratch_buffer_is_reused_and_not_saved():
    enc = encoders()
    mod = OGMGE(enc, mode="OGM_GE", alpha=0.8)
    lg, y = logits()
    mod.step(modality_logits=lg, labels=y, epoch=0)
    (buf,) = mod._buffers.values()
    ptr = buf.data_ptr()
    mod.step(modality_logits=lg, labels=y, epoch=0)
    assert next(iter(mod._buffers.values())).data_ptr() == ptr
    assert "buffers" not in str(mod.state_dict().keys())
