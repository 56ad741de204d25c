"""MCR oracle: one step's loss and gradients re-derived in float64 from the paper's equations
(Kontras et al., NeurIPS 2025; the released greedy game, SynIB Bias_Infusion.py:2230-2234),
written without the module's functions. Tolerance rtol 1e-6, fixed before the result was seen."""

from __future__ import annotations

import math

import pytest
import torch

from ogmge.methods.mcr import MCR

RTOL = 1e-6
MODS = ("a", "b", "c")
B, D, C, K = 6, 3, 3, 4
L, MULTIL, CONTR, TAU = 0.3, 0.05, 0.7, 0.5


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = {u: torch.randn(B, D, generator=g, dtype=torch.float64) for u in MODS}
    w = torch.randn(C, D * len(MODS), generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    hw = {u: torch.randn(C, D, generator=g, dtype=torch.float64) for u in MODS}
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    return z, w, bias, hw, y


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _jsd_rows(p_logits, q_logits):
    """Mean over rows of ½KL(p||r) + ½KL(q||r), r the midpoint; plain float64 tensors."""
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    r = (p + q) / 2
    return (0.5 * (p * (p / r).log()).sum(-1) + 0.5 * (q * (q / r).log()).sum(-1)).mean()


def _oracle(sign_own: float, sign_other: float):
    """Expected (total, grads) with the game's own/other signs (greedy: -1, +1)."""
    z, w, bias, hw, y = _setup()
    gen = torch.Generator().manual_seed(11)
    perms = [torch.randperm(B, generator=gen) for _ in range(K)]
    zs = {u: z[u].clone().requires_grad_(True) for u in MODS}
    wt, bt = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    hws = {u: hw[u].clone().requires_grad_(True) for u in MODS}
    idx = {u: i for i, u in enumerate(MODS)}

    def head(parts):  # fused logits of a linear concat head: sum_u W_u x_u + b
        return sum(parts[u] @ wt[:, idx[u] * D:(idx[u] + 1) * D].t() for u in MODS) + bt

    clean = head(zs)
    ce = torch.nn.functional.cross_entropy
    total = ce(clean, y) + MULTIL * sum(ce(zs[u] @ hws[u].t(), y) for u in MODS)
    target = clean.detach()
    game = torch.zeros((), dtype=torch.float64)
    for m in MODS:
        for k in MODS:
            acc = torch.zeros((), dtype=torch.float64)
            for pi in perms:
                parts = {}
                for u in MODS:
                    x = zs[u][pi] if u == m else zs[u]
                    parts[u] = x if u == k else x.detach()
                acc = acc + _jsd_rows(head(parts), target)
            game = game + (sign_own if k == m else sign_other) * acc / K
    total = total + L * game
    # supervised NT-Xent by explicit loops over positive pairs
    rows = torch.cat([zs[u] / zs[u].norm(dim=1, keepdim=True) for u in MODS])
    labels = y.repeat(len(MODS)).tolist()
    n = len(labels)
    pair_losses = []
    for i in range(n):
        negs = [j for j in range(n) if labels[j] != labels[i]]
        for j in range(n):
            if j == i or labels[j] != labels[i]:
                continue
            pos = torch.exp(rows[i] @ rows[j] / TAU)
            den = pos + sum(torch.exp(rows[i] @ rows[t] / TAU) for t in negs)
            pair_losses.append(-torch.log(pos / den))
    total = total + CONTR * torch.stack(pair_losses).mean()
    params = [*zs.values(), wt, bt, *hws.values()]
    grads = torch.autograd.grad(total, params)
    return total.detach(), grads


def _ours(game="greedy"):
    z, w, bias, hw, y = _setup()
    zs = {u: z[u].clone().requires_grad_(True) for u in MODS}
    wt, bt = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    hws = {u: hw[u].clone().requires_grad_(True) for u in MODS}

    def fusion(feats):
        return torch.cat([feats[u] for u in MODS], 1) @ wt.t() + bt

    m = MCR(MODS, fusion, torch.Generator().manual_seed(11), l=L, multil=MULTIL, contr=CONTR, tau=TAU,
            num_samples=K, game=game)
    total, _ = m.loss(fusion(zs), y, head_logits={u: zs[u] @ hws[u].t() for u in MODS}, features=zs)
    params = [*zs.values(), wt, bt, *hws.values()]
    return total.detach(), torch.autograd.grad(total, params)


def test_one_step_matches_the_float64_oracle():
    want, want_g = _oracle(-1.0, 1.0)
    got, got_g = _ours()
    torch.testing.assert_close(got, want, rtol=RTOL, atol=0.0)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)


def test_the_oracle_can_fail_a_flipped_game():
    flipped, flipped_g = _oracle(1.0, -1.0)
    got, got_g = _ours()
    assert not torch.allclose(got, flipped, rtol=RTOL)
    assert any(not torch.allclose(a, b, rtol=RTOL, atol=1e-12) for a, b in zip(got_g, flipped_g))


def test_ind_game_matches_the_oracle_with_no_other_terms():
    want, want_g = _oracle(-1.0, 0.0)
    got, got_g = _ours("ind")
    torch.testing.assert_close(got, want, rtol=RTOL, atol=0.0)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("logits", [[0.3, -1.2, 2.0], [5.0, 5.0, -3.0]])
def test_jsd_by_hand_in_python_floats(logits):
    from ogmge.methods.mcr import js_divergence

    other = [1.0, 0.0, -0.5]
    p, q = _softmax(logits), _softmax(other)
    r = [(x + y) / 2 for x, y in zip(p, q)]
    want = 0.5 * sum(x * math.log(x / m) for x, m in zip(p, r)) + 0.5 * sum(y * math.log(y / m) for y, m in zip(q, r))
    got = js_divergence(torch.tensor([logits], dtype=torch.float64), torch.tensor([other], dtype=torch.float64))
    assert math.isclose(float(got), want, rel_tol=RTOL)
