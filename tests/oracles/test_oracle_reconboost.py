"""ReconBoost: one boosting step and one rectification step re-derived in float64 from the
equations (Hua et al., ICML 2024; the released ``train.py:339-351, 397-402``), with the
gradients written out by hand, independently of ``ogmge.methods.reconboost``'s functions.

Setting: three modalities a, b, c with fixed features phi_u (B, D_u); learners
f_u = W_u phi_u + b_u (linear heads); boost rate beta. A 6-epoch run has three stages of
one boosting + one rectification epoch: epoch 2 boosts b with the ensemble {a} (c has not
started) and the consolidation term against a (the previous stage's learner); epoch 5
rectifies all three.

Boosting (means over the B x C entries, n = B * C; p = softmax(f_b), q = softmax(beta f_a),
r = softmax(f_a), y one-hot):
  L = (1/n) sum -(w1 - w2 q) y log p + alpha (1/n) sum (p - r)^2
  dL/df_b[i, k] = -(1/n) (w1 - w2 q_iy) (y_ik - p_ik)
                  + (2 alpha / n) p_ik ((p_ik - r_ik) - sum_c (p_ic - r_ic) p_ic)
Rectification (F = beta sum_u f_u, P = softmax(F)):
  dL/dF = (P - y) / B,  dW_u = beta G^T phi_u,  db_u = beta sum_i G_i,  dbeta = sum G * sum_u f_u.
One SGD step (lr eta, no momentum): theta - eta * grad. Tolerances fixed before comparing:
rtol 1e-6, atol 1e-12 * scale.
"""

from __future__ import annotations

import torch

from ogmge.methods.reconboost import BoostedSum, ReconBoost

NAMES = ("a", "b", "c")
DIMS = {"a": 4, "b": 3, "c": 5}
B, C = 7, 4
W1, W2, ALPHA, BETA, ETA = 5.0, 1.0, 0.5, 0.8, 0.1


def close(actual, expected):
    scale = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12 * scale)


def setup(seed=0):
    torch.manual_seed(seed)
    fusion = BoostedSum(DIMS, C, boost_rate=BETA).double()
    g = torch.Generator().manual_seed(seed + 1)
    phi = {n: torch.randn(B, d, generator=g, dtype=torch.float64) for n, d in DIMS.items()}
    y = torch.randint(0, C, (B,), generator=g)
    W = {n: fusion.heads[n].weight.detach().clone() for n in NAMES}
    bias = {n: fusion.heads[n].bias.detach().clone() for n in NAMES}
    return fusion, phi, y, W, bias


def ours(fusion, phi, y, epoch, **opts):
    method = ReconBoost(fusion, epochs=6, w1=W1, w2=W2, alpha=ALPHA, **opts)
    for e in range(epoch + 1):
        method.begin_epoch(e, train_size=B)
    feats = {n: v.clone().requires_grad_(True) for n, v in phi.items()}
    opt = torch.optim.SGD(fusion.parameters(), lr=ETA)
    opt.zero_grad(set_to_none=True)
    total, _ = method.loss(fusion(feats), y, features=feats)
    total.backward()
    grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in fusion.named_parameters()}
    feat_grads = {n: feats[n].grad for n in NAMES}
    opt.step()
    return total.detach(), grads, feat_grads, {n: p.detach().clone() for n, p in fusion.named_parameters()}


def oracle_boost(phi, y, W, bias, *, w2=W2, alpha=ALPHA):
    f = {n: phi[n] @ W[n].T + bias[n] for n in NAMES}
    p = torch.softmax(f["b"], 1)
    q = torch.softmax(BETA * f["a"], 1)
    r = torch.softmax(f["a"], 1)
    Y = torch.zeros(B, C, dtype=torch.float64)
    Y[torch.arange(B), y] = 1.0
    n = B * C
    qy = q[torch.arange(B), y].unsqueeze(1)
    loss = (-(W1 - w2 * qy) * Y * torch.log(p)).sum() / n + alpha * ((p - r) ** 2).sum() / n
    s = ((p - r) * p).sum(1, keepdim=True)
    G = -(W1 - w2 * qy) * (Y - p) / n + 2 * alpha / n * p * ((p - r) - s)
    return loss, G.T @ phi["b"], G.sum(0), G @ W["b"]


def test_one_boosting_step_matches_the_hand_derivation():
    fusion, phi, y, W, bias = setup()
    total, grads, feat_grads, after = ours(fusion, phi, y, epoch=2)
    loss, dW, db, dphi = oracle_boost(phi, y, W, bias)
    close(total, loss)
    close(grads["heads.b.weight"], dW)
    close(grads["heads.b.bias"], db)
    close(feat_grads["b"], dphi)
    close(after["heads.b.weight"], W["b"] - ETA * dW)
    # only learner b moves: a, c and beta get no gradient at all
    assert grads["heads.a.weight"] is None and grads["heads.c.weight"] is None and grads["boost_rate"] is None
    assert feat_grads["a"] is None and feat_grads["c"] is None
    assert torch.equal(after["heads.a.weight"], W["a"])


def test_the_oracle_can_fail_flipped_or_released_rules_differ():
    fusion, phi, y, W, bias = setup()
    _, grads, _, _ = ours(fusion, phi, y, epoch=2)
    for changed in ({"w2": -W2}, {"alpha": 0.0}):
        _, dW, _, _ = oracle_boost(phi, y, W, bias, **changed)
        assert (grads["heads.b.weight"] - dW).abs().max() > 1e-6, changed
    # as released: the consolidation term carries no gradient (= the alpha 0 oracle)
    fusion, phi, y, W, bias = setup()
    _, released, _, _ = ours(fusion, phi, y, epoch=2, as_released=True)
    _, dW0, _, _ = oracle_boost(phi, y, W, bias, alpha=0.0)
    close(released["heads.b.weight"], dW0)


def test_one_rectification_step_matches_the_hand_derivation():
    fusion, phi, y, W, bias = setup(seed=4)
    total, grads, feat_grads, after = ours(fusion, phi, y, epoch=5)
    f = {n: phi[n] @ W[n].T + bias[n] for n in NAMES}
    S = f["a"] + f["b"] + f["c"]
    F = BETA * S
    P = torch.softmax(F, 1)
    Y = torch.zeros(B, C, dtype=torch.float64)
    Y[torch.arange(B), y] = 1.0
    close(total, -(Y * torch.log(P)).sum() / B)
    G = (P - Y) / B
    for n in NAMES:
        close(grads[f"heads.{n}.weight"], BETA * G.T @ phi[n])
        close(grads[f"heads.{n}.bias"], BETA * G.sum(0))
        close(feat_grads[n], BETA * G @ W[n])
        close(after[f"heads.{n}.weight"], W[n] - ETA * BETA * G.T @ phi[n])
    dbeta = (G * S).sum()
    close(grads["boost_rate"], dbeta)
    close(after["boost_rate"], torch.tensor(BETA, dtype=torch.float64) - ETA * dbeta)
