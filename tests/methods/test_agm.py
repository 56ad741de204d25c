"""AGM against a float64 re-derivation: Shapley contributions by enumerating modality
orders (N = 3) and the authors' two-modality formula, the coefficients from the running
scores, gradients scaled by backward hooks on the contributions, the clipping rule."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from ogmge import methods
from ogmge.methods import AGM
from support.method_helpers import batch, tiny_model

NAMES = ("audio", "visual", "text")


def f_of(model, feats, present):
    return model.fusion({u: feats[u] if u in present else torch.zeros_like(feats[u]) for u in feats})


def oracle_contributions(model, feats, names):
    """Average marginal contribution over every order of the modalities, plus f(empty)/N."""
    orders = list(itertools.permutations(names))
    out = {}
    for u in names:
        acc = 0
        for order in orders:
            before = set(order[: order.index(u)])
            acc = acc + f_of(model, feats, before | {u}) - f_of(model, feats, before)
        out[u] = acc / len(orders) + f_of(model, feats, set()) / len(names)
    return out


def oracle_coeffs(scores, running, alpha, cap=10.0):
    out = {}
    for u in scores:
        o = [w for w in scores if w != u]
        gap = math.exp(sum(running[w] for w in o) / len(o) - running[u]) - math.exp(
            sum(scores[w] for w in o) / len(o) - scores[u])
        out[u] = math.exp(alpha * min(gap, cap))
    return out


def score(m, y):
    p = torch.softmax(m.detach(), 1)[torch.arange(len(y)), y]
    return float(-torch.log(torch.clamp(p, min=1e-8)).mean())


def test_two_modalities_match_the_authors_contribution_formula():
    names = ("audio", "visual")
    model = tiny_model(names, heads=False)
    x, y = batch(names, n=10, seed=3)
    feats = model.encode(x)
    got = methods.shapley_contributions(model.fusion, feats, names)
    full, no_a, no_v = f_of(model, feats, {"audio", "visual"}), f_of(model, feats, {"visual"}), \
        f_of(model, feats, {"audio"})
    torch.testing.assert_close(got["audio"], 0.5 * (full - no_a + no_v), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(got["visual"], 0.5 * (full - no_v + no_a), rtol=1e-6, atol=1e-12)


def test_two_steps_with_three_modalities_match_hooks_on_the_contributions():
    model = tiny_model(NAMES, heads=False)
    agm = AGM(NAMES, model.fusion, list(model.parameters()), alpha=0.8, clip=1e9)
    running = {u: 0.0 for u in NAMES}
    for step, seed in enumerate((5, 6), start=1):
        x, y = batch(NAMES, n=12, seed=seed)
        out = model(x, labels=y)
        total, terms = agm.loss(out.logits, y, features=out.features)
        params = [p for p in model.parameters() if p.requires_grad]
        g_ours = torch.autograd.grad(total, params, allow_unused=True)

        out2 = model(x, labels=y)
        contrib = oracle_contributions(model, out2.features, NAMES)
        torch.testing.assert_close(sum(contrib.values()), out2.logits, rtol=1e-6, atol=1e-12)
        scores = {u: score(contrib[u], y) for u in NAMES}
        coeffs = oracle_coeffs(scores, running, 0.8)
        for u in NAMES:
            contrib[u].register_hook(lambda g, c=coeffs[u]: g * c)
        ref = F.cross_entropy(sum(contrib.values()), y)
        g_ref = torch.autograd.grad(ref, params, allow_unused=True)
        for a, b in zip(g_ours, g_ref):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)
        for u in NAMES:
            assert agm.last[f"agm_coeff/{u}"] == pytest.approx(coeffs[u], rel=1e-9)
            running[u] = running[u] * (step - 1) / step + scores[u] / step
        assert agm.running == pytest.approx(running, rel=1e-12)
    assert any(abs(c - 1) > 1e-3 for c in coeffs.values())  # the second step modulates


def test_outside_the_window_no_modulation_and_clipping_follows_the_head_gradient():
    model = tiny_model(("audio", "visual"), heads=False)
    agm = AGM(("audio", "visual"), model.fusion, list(model.parameters()), end=0, clip=1e-4)
    agm.end_epoch(0)  # epoch 1 is past end = 0
    x, y = batch(("audio", "visual"), n=8, seed=2)
    out = model(x, labels=y)
    total, _ = agm.loss(out.logits, y, features=out.features)
    assert all(agm.last[f"agm_coeff/{u}"] == 1.0 for u in ("audio", "visual"))
    torch.testing.assert_close(total, F.cross_entropy(out.logits, y), rtol=1e-12, atol=1e-12)
    total.backward()

    def norm():
        return float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)))

    before = norm()
    assert before > 1e-3
    agm.after_backward()
    assert norm() == pytest.approx(1e-4 * before / (before + 1e-6), rel=1e-9)  # clip_grad_norm_'s rule


def test_registered_with_the_authors_defaults_and_limits():
    cls = methods.get("agm")
    assert {o.name: o.default for o in cls.options} == {"alpha": 1.0, "start": 0, "end": 20, "cap": 10.0,
                                                        "clip": 1.0}
    assert cls.min_modalities == 2 and cls.max_modalities == 6
    model = tiny_model(NAMES, heads=False)
    ctx = methods.BuildContext(modalities=NAMES, encoders=dict(model.encoders), fusion=model.fusion)
    assert cls.build(ctx, alpha=2.5).alpha == 2.5
    with pytest.raises(ValueError, match="agm option alpha.*0"):
        cls.build(ctx, alpha=0)
    with pytest.raises(ValueError, match="at most 6"):
        AGM(tuple("abcdefg"), model.fusion, [])
