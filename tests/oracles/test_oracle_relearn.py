"""Diagnosing & Re-learning against a float64 re-derivation of the paper's equations
(Wei et al., ECCV 2024): purity of a clustering, the train/validation purity gap
``g_u = |P_u(D) - P_u(V)|``, the strength ``w_u = tanh(lambda g_u)`` and the soft
re-initialisation ``theta_u <- w_u theta_u(init) + (1 - w_u) theta_u``.

The clustering itself (k-means++ draws differ between implementations) is taken from the
method's own clustering step (``Relearn.assignments``); everything after it is recomputed
here with Python loops and float64 arithmetic, not with the module's functions. Tolerance
(fixed before the first run): rtol 1e-6."""

from __future__ import annotations

import math

import torch

from ogmge.methods import Relearn
from support.method_helpers import CLASSES, batch, tiny_model

NAMES = ("audio", "visual", "text")
LAM = 3.0
RTOL = 1e-6


def oracle_purity(labels, clusters):
    """(1/n) * sum over clusters of the count of its most frequent class (loops)."""
    n = len(labels)
    total = 0
    for k in set(int(c) for c in clusters):
        counts: dict[int, int] = {}
        for i in range(n):
            if int(clusters[i]) == k:
                counts[int(labels[i])] = counts.get(int(labels[i]), 0) + 1
        total += max(counts.values())
    return total / n


def _trained_away(model, seed=11):
    """Move every floating parameter and buffer of the encoders away from its initial value
    (stands in for training), BatchNorm statistics included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for enc in model.encoders.values():
            for t in list(enc.parameters()) + [b for b in enc.buffers() if b.is_floating_point()]:
                t.add_(0.5 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            for m in enc.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.running_var.abs_().add_(0.1)


def _setup():
    model = tiny_model(NAMES, heads=False)
    method = Relearn(model.encoders, CLASSES, lam=LAM, reinit_epoch=2, reinit_num=3, scale_schedule=False,
                     n_init=3, seed=5)
    init = {u: {n: t.detach().clone() for n, t in list(enc.named_parameters()) + list(enc.named_buffers())}
            for u, enc in model.encoders.items()}
    _trained_away(model)
    current = {u: {n: t.detach().clone() for n, t in list(enc.named_parameters()) + list(enc.named_buffers())}
               for u, enc in model.encoders.items()}
    head = {n: p.detach().clone() for n, p in model.fusion.named_parameters()}
    xt, yt = batch(NAMES, n=40, seed=2)
    xv, yv = batch(NAMES, n=14, seed=3)
    model.eval()
    with torch.no_grad():
        ft, fv = model.encode(xt), model.encode(xv)
    return model, method, init, current, head, (ft, yt), (fv, yv)


def oracle_update(method, init, current, train, heldout):
    """Expected ``{u: {tensor name: value}}`` and ``{u: w}``, from the method's cluster assignments."""
    want, ws = {}, {}
    for u in NAMES:
        p_train = oracle_purity(train[1].tolist(), method.assignments[u]["train"].tolist())
        p_val = oracle_purity(heldout[1].tolist(), method.assignments[u]["val"].tolist())
        w = math.tanh(LAM * abs(p_train - p_val))
        ws[u] = (p_train, p_val, w)
        want[u] = {}
        for n, cur in current[u].items():
            if cur.is_floating_point():
                want[u][n] = w * init[u][n].double() + (1 - w) * cur.double()
            else:
                want[u][n] = cur  # integer buffers (BatchNorm's counter) stay
    return want, ws


def test_one_reinit_matches_the_equations_in_float64():
    model, method, init, current, head, train, heldout = _setup()
    assert not method.split_features_due(1) and method.split_features_due(2)
    method.split_features(2, train=train, heldout=heldout)
    want, ws = oracle_update(method, init, current, train, heldout)
    for u in NAMES:
        p_train, p_val, w = ws[u]
        assert math.isclose(method.last[u]["purity_train"], p_train, rel_tol=RTOL)
        assert math.isclose(method.last[u]["purity_val"], p_val, rel_tol=RTOL)
        assert math.isclose(method.last[u]["w"], w, rel_tol=RTOL, abs_tol=1e-12)
        got = dict(list(model.encoders[u].named_parameters()) + list(model.encoders[u].named_buffers()))
        for n, value in want[u].items():
            if value.is_floating_point():
                torch.testing.assert_close(got[n].detach().double(), value, rtol=RTOL, atol=1e-12)
            else:
                assert torch.equal(got[n], value), n
    for n, p in model.fusion.named_parameters():  # the head is untouched
        assert torch.equal(p, head[n]), n
    assert method.done == 1 and not method.split_features_due(3) and method.split_features_due(4)
    # the draw is not degenerate: some modality moved, and not all the way back
    assert any(0 < ws[u][2] < 1 for u in NAMES)


def test_the_oracle_rejects_a_flipped_blend():
    """Swapping the roles of theta(init) and theta (w on the current weights) gives weights the
    oracle's tolerance tells apart."""
    model, method, init, current, _, train, heldout = _setup()
    method.split_features(2, train=train, heldout=heldout)
    _, ws = oracle_update(method, init, current, train, heldout)
    u = next(u for u in NAMES if 0 < ws[u][2] < 1 and abs(ws[u][2] - 0.5) > 1e-3)
    w = ws[u][2]
    weight = dict(model.encoders[u].named_parameters())["fc1.weight"].detach().double()
    flipped = (1 - w) * init[u]["fc1.weight"].double() + w * current[u]["fc1.weight"].double()
    assert not torch.allclose(weight, flipped, rtol=RTOL, atol=1e-12)
