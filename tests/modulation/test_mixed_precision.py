"""Mixed precision: modulate after GradScaler.unscale_; a non-finite step is left alone."""

import pytest
import torch
from torch import nn

from ogmge import OGMGE


def _model():
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Conv1d(2, 3, 3), "b": nn.Conv1d(2, 3, 3), "head": nn.Linear(6, 4)})


def _forward(m, x):
    fa = m["a"](x).mean(-1)
    fb = m["b"](x * 0.1).mean(-1)
    out = m["head"](torch.cat([fa, fb], 1))
    w, bias = m["head"].weight, m["head"].bias
    return out, {"a": fa @ w[:, :3].t() + bias / 2, "b": fb @ w[:, 3:].t() + bias / 2}


def _step(scaler, poison=False, device="cpu"):
    m = _model().to(device)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    mod = OGMGE({"a": m["a"], "b": m["b"]}, mode="OGM", alpha=0.8)
    x = torch.randn(8, 2, 10, generator=torch.Generator().manual_seed(1)).to(device)
    y = (torch.arange(8) % 4).to(device)
    with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
        out, mlog = _forward(m, x)
    loss = nn.functional.cross_entropy(out.float(), y)
    scaler.scale(loss).backward()
    if poison:
        m["a"].weight.grad[0, 0, 0] = float("inf")
    scaler.unscale_(opt)
    unscaled = {k: p.grad.clone() for k, p in m.named_parameters()}
    stats = mod.step(modality_logits={k: v.detach() for k, v in mlog.items()}, labels=y, epoch=0)
    before = {k: p.detach().clone() for k, p in m.named_parameters()}
    scaler.step(opt)
    scaler.update()
    after = {k: p.detach().clone() for k, p in m.named_parameters()}
    return stats, unscaled, before, after, m


def test_modulation_acts_on_unscaled_gradients():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    stats, unscaled, _, _, m = _step(scaler)
    k = {n: float(v) for n, v in stats.coefficients.items()}
    assert stats.modulated and min(k.values()) < 1
    for name in ("a", "b"):
        torch.testing.assert_close(m[name].weight.grad, k[name] * unscaled[f"{name}.weight"], rtol=1e-6, atol=0)


def test_non_finite_step_is_skipped_by_both():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    stats, unscaled, before, after, m = _step(scaler, poison=True)
    assert not stats.modulated and stats.skip_reason == "non-finite gradients"
    assert torch.equal(m["b"].weight.grad, unscaled["b.weight"])
    for k in before:  # the scaler skipped the optimizer step
        assert torch.equal(before[k], after[k])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_step():
    scaler = torch.amp.GradScaler("cuda")
    stats, unscaled, _, _, m = _step(scaler, device="cuda")
    assert stats.modulated
    k = float(stats.coefficients["a"])
    torch.testing.assert_close(m["a"].weight.grad, k * unscaled["a.weight"], rtol=1e-5, atol=0)
