"""MMPareto against a float64 reference that follows DESIGN §7 literally, with a separate
backward pass per loss and encoder; N = 3; both branches; zero-norm tensors; heads."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import MMPareto
from support.method_helpers import CLASSES, FEAT, batch, tiny_model

NAMES = ("audio", "visual", "text")


def _force(model, sign: float, seed: int = 0):
    """Small fusion weights and heads = sign * (their fusion block) + a perturbation:
    near-uniform softmax makes cos(g_mm, g_u) take the sign of ``sign``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.fusion.fc.weight
        w.copy_(0.05 * torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.dtype))
        model.fusion.fc.bias.zero_()
        for i, n in enumerate(NAMES):
            block = w[:, i * FEAT:(i + 1) * FEAT]
            noise = 0.02 * torch.randn(block.shape, generator=g, dtype=torch.float64).to(w.dtype)
            model.heads[n].weight.copy_(sign * block + noise)
            model.heads[n].bias.zero_()


def reference_grads(model, x, y, scale=1.5):
    """DESIGN §7 literally, one autograd pass per (loss, parameter set)."""
    out = model(x, labels=y)
    l_mm = F.cross_entropy(out.logits, y)
    l_uni = {n: F.cross_entropy(out.head_logits[n], y) for n in NAMES}
    grads, cos = {}, {}
    for n in NAMES:
        ps = list(model.encoders[n].parameters())
        g_mm = torch.autograd.grad(l_mm, ps, retain_graph=True)
        g_u = torch.autograd.grad(l_uni[n], ps, retain_graph=True)
        a, b = torch.cat([t.flatten() for t in g_mm]), torch.cat([t.flatten() for t in g_u])
        c = torch.dot(a, b) / (a.norm() * b.norm())
        if c > 0:
            w_mm, w_u = 0.5, 0.5
        else:
            gamma = float(torch.clamp(torch.dot(b - a, b) / (a - b).norm() ** 2, 0, 1))
            w_mm, w_u = gamma, 1 - gamma
        cos[n] = float(c)
        for p, gm, gu in zip(ps, g_mm, g_u):
            new = 2 * (w_mm * gm + w_u * gu)
            plain = gm + gu
            if new.norm() > 0 and plain.norm() > new.norm():
                new = new * (plain.norm() / new.norm())
            grads[p] = new * scale
    rest = [p for name, p in model.named_parameters() if not name.startswith("encoders.")]
    total = l_mm + sum(l_uni.values())
    for p, g in zip(rest, torch.autograd.grad(total, rest, allow_unused=True)):
        grads[p] = g
    return grads, cos


def _ours(model, x, y, scale=1.5):
    mp = MMPareto(model.encoders, scale=scale)
    out = model(x, labels=y)
    total, terms = mp.loss(out.logits, y, head_logits=out.head_logits)
    model.zero_grad(set_to_none=True)
    mp.backward(total, terms)
    return mp


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_matches_the_float64_reference_in_both_branches(sign):
    model = tiny_model(NAMES)
    _force(model, sign)
    x, y = batch(NAMES)
    state = copy.deepcopy(model.state_dict())
    ref, ref_cos = reference_grads(model, x, y)
    model.load_state_dict(state)  # the same BatchNorm statistics for our forward pass
    mp = _ours(model, x, y)
    for n in NAMES:
        assert (ref_cos[n] > 0) == (sign > 0), ref_cos  # the branch was forced
        assert float(mp.cos[n]) == pytest.approx(ref_cos[n], rel=1e-10)
        if sign < 0:
            assert 0 < float(mp.w_mm[n]) < 1
    names = {p: name for name, p in model.named_parameters()}
    for p, g_ref in ref.items():
        g = p.grad
        if g_ref is None:
            assert g is None or torch.count_nonzero(g) == 0, names[p]
            continue
        if g_ref.norm() == 0:
            assert g is None or torch.count_nonzero(g) == 0, names[p]  # zero-norm stays zero
            continue
        err = float((g - g_ref).norm() / g_ref.norm())
        assert err <= 1e-10, (names[p], err)
    dead = [model.encoders[n].dead.grad for n in NAMES]
    assert all(d is not None and torch.count_nonzero(d) == 0 for d in dead)


def test_heads_get_the_plain_sum():
    model = tiny_model(NAMES)
    _force(model, -1.0, seed=4)
    x, y = batch(NAMES, seed=2)
    state = copy.deepcopy(model.state_dict())
    out = model(x, labels=y)
    fused_w = torch.autograd.grad(F.cross_entropy(out.logits, y), model.fusion.fc.weight)[0]
    head_w = torch.autograd.grad(F.cross_entropy(out.head_logits["visual"], y), model.heads["visual"].weight)[0]
    model.load_state_dict(state)
    _ours(model, x, y)
    assert torch.allclose(model.fusion.fc.weight.grad, fused_w, rtol=1e-12, atol=0)
    assert torch.allclose(model.heads["visual"].weight.grad, head_w, rtol=1e-12, atol=0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_float32_within_1e_5(sign):
    model = tiny_model(NAMES)
    _force(model, sign)
    x, y = batch(NAMES)
    state = copy.deepcopy(model.state_dict())
    ref, _ = reference_grads(model, x, y)
    model32 = tiny_model(NAMES, dtype=torch.float32)
    model32.load_state_dict({k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in state.items()})
    _ours(model32, {k: v.float() for k, v in x.items()}, y)
    p64 = dict(model.named_parameters())
    for name, p in model32.named_parameters():
        g_ref = ref[p64[name]]
        # skip tensors whose exact gradient is 0 (dead; a bias right before BatchNorm: ~1e-18 in float64)
        if g_ref is None or g_ref.norm() < 1e-12:
            continue
        err = float((p.grad.double() - g_ref).norm() / g_ref.norm())
        assert err <= 1e-5, (name, err)


def test_gradients_present_before_are_kept_and_scale_multiplies():
    model = tiny_model(NAMES)
    _force(model, 1.0)
    x, y = batch(NAMES)
    state = copy.deepcopy(model.state_dict())
    _ours(model, x, y, scale=1.0)
    once = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.load_state_dict(state)
    _ours(model, x, y, scale=3.0)
    for name, p in model.named_parameters():
        if name.startswith("encoders.") and name in once:
            assert torch.allclose(p.grad, 3.0 * once[name], rtol=1e-12, atol=1e-300)
    # accumulation: a second backward on top of existing gradients adds
    model.load_state_dict(state)
    mp = MMPareto(model.encoders, scale=1.0)
    model.zero_grad(set_to_none=True)
    for _ in range(2):
        model.load_state_dict(state)
        out = model(x, labels=y)
        mp.backward(*mp.loss(out.logits, y, head_logits=out.head_logits))
    for name, p in model.named_parameters():
        if name.startswith("encoders.") and name in once:
            assert torch.allclose(p.grad, 2.0 * once[name], rtol=1e-10, atol=1e-300)
    assert CLASSES == model.num_classes
