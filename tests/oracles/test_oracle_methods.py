"""One step (or one estimate) of each method, re-derived from its paper / its authors' released
update in float64 tensor algebra, independently of ``ogmge``'s implementation.

Our implementation runs on a float64 model (``model.double()``); random draws are taken from
our generators (a copy of their state) and fed to the oracle. Tolerances, fixed before any
comparison: ``rtol=1e-6, atol=1e-12 * scale`` (scale: the largest magnitude compared, at least
1); iteratively fitted weights are checked by their optimality (KKT) conditions to 1e-6.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from ogmge import OGMGE
from ogmge.contracts import ModalitySpec
from ogmge.methods import (
    GBlending,
    MMPareto,
    ModalityDropout,
    Multitask,
    StackedPrediction,
    UnimodalEnsemble,
    blending_weights,
)
from ogmge.models import build_model

NAMES = ("audio", "visual")
C, B, D, FEAT = 4, 24, 6, 5


def close(actual, expected):
    scale = max(float(expected.abs().max()), 1.0) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12 * scale)


def model64(names=NAMES, *, heads=False, seed=0):
    torch.manual_seed(seed)
    specs = {n: ModalitySpec(n, "vector", (D,)) for n in names}
    return build_model(specs, num_classes=C, fusion="concat", hidden=7, out_dim=FEAT, heads=heads).double().train()


def data(names=NAMES, seed=1, strong="audio"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=g)
    x = {n: torch.randn(B, D, generator=g, dtype=torch.float64) for n in names}
    x[strong][torch.arange(B), y] += 3.0  # the strong modality carries the label
    return x, y


def grads(params):
    return [p.grad.detach().clone() for p in params]


# ----------------------------------------------------------------------- OGM / OGM-GE
@pytest.mark.parametrize("mode", ["OGM", "OGM_GE"])
def test_ogm_step_matches_the_official_update(mode):
    """OGM-GE_CVPR2022 main.py: per-modality logits W_u phi_u + b/2, s_u = sum softmax[y],
    ratio_v = s_v / s_a; the dominant one gets k = 1 - tanh(alpha * ratio); GE adds
    N(0, std(g) + 1e-8) to every selected gradient of both encoders (std of the unmodulated one)."""
    alpha = 0.8
    model = model64()
    x, y = data()
    out = model(x, labels=y)
    F.cross_entropy(out.logits, y).backward()
    enc = {n: [p for p in model.encoders[n].parameters() if p.dim() >= 2] for n in NAMES}
    g0 = {n: grads(enc[n]) for n in NAMES}
    modulator = OGMGE(dict(model.encoders.items()), mode=mode, alpha=alpha, select="weights", seed=3)
    gen = torch.Generator().manual_seed(0)
    gen.set_state(modulator.generators.get("cpu").get_state())

    # oracle
    w, b = model.fusion.fc.weight.detach(), model.fusion.fc.bias.detach()
    fa, fv = out.features["audio"].detach(), out.features["visual"].detach()
    out_a, out_v = fa @ w[:, :FEAT].T + b / 2, fv @ w[:, FEAT:].T + b / 2
    s_a = torch.softmax(out_a, 1).gather(1, y.view(-1, 1)).sum()
    s_v = torch.softmax(out_v, 1).gather(1, y.view(-1, 1)).sum()
    ratio_v, ratio_a = s_v / s_a, s_a / s_v
    assert abs(float(ratio_v) - 1) > 1e-3  # not the tie, where the codes differ
    k = {"audio": 1.0, "visual": 1.0}
    if ratio_v > 1:
        k["visual"] = 1 - math.tanh(alpha * float(ratio_v))
    else:
        k["audio"] = 1 - math.tanh(alpha * float(ratio_a))
    expected = {}
    for n in NAMES:
        z = torch.randn(sum(g.numel() for g in g0[n]), generator=gen, dtype=torch.float64)
        parts = z.split([g.numel() for g in g0[n]])
        expected[n] = [k[n] * g + (((g.std() + 1e-8) * e.view(g.shape)) if mode == "OGM_GE" else 0.0)
                       for g, e in zip(g0[n], parts)]

    stats = modulator.step(modality_logits=out.modality_logits, labels=y, epoch=0)
    assert abs(float(stats.coefficients["audio"]) - k["audio"]) < 1e-9
    for n in NAMES:
        for got, want in zip(grads(enc[n]), expected[n]):
            close(got, want)


# ----------------------------------------------------------------------- modality dropout
def test_modality_dropout_step_matches_the_definition():
    """Per sample, w.p. p keep one modality chosen uniformly, the others' features zeroed."""
    model = model64()
    x, y = data()
    md = ModalityDropout(list(NAMES), p=0.6, seed=4)
    gen = torch.Generator().manual_seed(0)
    gen.set_state(md.generators.get("cpu").get_state())
    feats = {n: f.detach() for n, f in model.encode(x).items()}
    got = model.fusion(md.transform_features(feats))

    single = torch.rand(B, generator=gen) < 0.6
    chosen = torch.randint(2, (B,), generator=gen)
    keep = {n: (~single | (chosen == i)).double().view(-1, 1) for i, n in enumerate(NAMES)}
    w, b = model.fusion.fc.weight.detach(), model.fusion.fc.bias.detach()
    want = torch.cat([feats["audio"] * keep["audio"], feats["visual"] * keep["visual"]], 1) @ w.T + b
    close(got.detach(), want)
    assert 0 < int(single.sum()) < B


# ----------------------------------------------------------------------- MMPareto
def test_mmpareto_step_matches_the_authors_update():
    """MMPareto_ICML2024 MMPareto.py: per encoder, cos(g_mm, g_u) over all its gradients; > 0:
    weights (1/2, 1/2), else the two-vector min-norm weights; per tensor new = 2(w_mm g_mm +
    w_u g_u), scaled to ||g_mm + g_u|| when that is larger, times 1.5; heads: plain sums."""
    model = model64(heads=True)
    x, y = data()
    with torch.no_grad():  # audio's head agrees with the fusion head's audio block, visual's opposes it
        model.heads["audio"].weight.copy_(model.fusion.fc.weight[:, :FEAT])
        model.heads["visual"].weight.copy_(-3.0 * model.fusion.fc.weight[:, FEAT:])
    out = model(x, labels=y)
    l_mm = F.cross_entropy(out.logits, y)
    l_u = {n: F.cross_entropy(out.head_logits[n], y) for n in NAMES}
    expected, cosines = {}, {}
    for n in NAMES:
        ps = list(model.encoders[n].parameters())
        g_mm = torch.autograd.grad(l_mm, ps, retain_graph=True)
        g_u = torch.autograd.grad(l_u[n], ps, retain_graph=True)
        a, b = torch.cat([g.flatten() for g in g_mm]), torch.cat([g.flatten() for g in g_u])
        cos = a @ b / (a.norm() * b.norm())
        cosines[n] = float(cos)
        if cos > 0:
            w_mm, w_u = 0.5, 0.5
        else:
            gamma = float(((b - a) @ b) / ((a - b) @ (a - b)))
            w_mm, w_u = min(max(gamma, 0.0), 1.0), 1 - min(max(gamma, 0.0), 1.0)
        new = []
        for gm, gu in zip(g_mm, g_u):
            t = 2 * w_mm * gm + 2 * w_u * gu
            three = (gm + gu).norm()
            ratio = three / t.norm() if t.norm() > 0 else torch.tensor(1.0, dtype=torch.float64)
            new.append((ratio * t if ratio > 1 else t) * 1.5)
        expected[n] = new
    head_params = list(model.fusion.parameters()) + list(model.heads.parameters())
    head_expected = torch.autograd.grad(l_mm + sum(l_u.values()), head_params, retain_graph=True)
    assert min(cosines.values()) < 0 < max(cosines.values())  # both branches of the rule

    mp = MMPareto(dict(model.encoders.items()), scale=1.5)
    model.zero_grad()
    total, terms = mp.loss(out.logits, y, head_logits=out.head_logits)
    mp.backward(total, terms)
    for n in NAMES:
        for p, want in zip(model.encoders[n].parameters(), expected[n]):
            close(p.grad, want)
    for p, want in zip(head_params, head_expected):
        close(p.grad, want)


# ----------------------------------------------------------------------- multitask
def test_multitask_step_is_the_uniform_baseline():
    """MMPareto_ICML2024 uniform_baseline.py:79: loss = loss_mm + loss_a + loss_v."""
    model = model64(heads=True)
    x, y = data()
    out = model(x, labels=y)
    total, _ = Multitask(list(NAMES)).loss(out.logits, y, head_logits=out.head_logits)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
    z = [out.logits, out.head_logits["audio"], out.head_logits["visual"]]
    ref = sum((torch.logsumexp(lg, 1) - lg.gather(1, y.view(-1, 1)).squeeze(1)).mean() for lg in z)
    close(total.detach(), ref.detach())
    want = torch.autograd.grad(ref, params, allow_unused=True)
    for g, h in zip(got, want):
        if h is None:
            assert g is None or g.abs().max() == 0
        else:
            close(g, h)


# ----------------------------------------------------------------------- fitted pools (KKT)
def kkt_residual(log_probs, labels, w):
    """Max violation of the simplex KKT conditions of min_w NLL(softmax(sum_u w_u lp_u)):
    the gradient equals a common value on the support and is no smaller off it."""
    z = torch.einsum("u,umc->mc", w, log_probs)
    p = torch.softmax(z, 1)
    grad = (torch.einsum("mc,umc->u", p, log_probs)
            - log_probs.gather(2, labels.view(1, -1, 1).expand(len(w), -1, 1)).squeeze(2).sum(1)) / labels.numel()
    support = w > 1e-9
    lam = grad[support].mean()
    on = (grad[support] - lam).abs().max()
    off = (lam - grad[~support]).clamp_min(0).max() if (~support).any() else torch.zeros((), dtype=grad.dtype)
    return float(torch.maximum(on, off)), bool(support.sum() > 1)


def heldout_logits(members, seed=2, n=200):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    out = {}
    for i, m in enumerate(members):
        lg = torch.randn(n, C, generator=g, dtype=torch.float64)
        lg[torch.arange(n), y] += 0.8 + 0.4 * i  # each member somewhat informative
        out[m] = lg
    return out, y


def test_unimodal_ensemble_weights_satisfy_the_kkt_conditions():
    logits, y = heldout_logits(NAMES)
    ue = UnimodalEnsemble(list(NAMES))
    w = ue.fit_prediction(head_logits=logits, labels=y)
    lp = torch.stack([torch.log_softmax(logits[n], 1) for n in NAMES])
    residual, interior = kkt_residual(lp, y, w)
    assert residual <= 1e-6 and abs(float(w.sum()) - 1) <= 1e-12 and bool((w >= 0).all())
    assert interior
    close(ue.predict(logits), torch.einsum("u,umc->mc", w, lp))


def test_stacked_pool_over_fused_and_heads_satisfies_the_kkt_conditions():
    members = ("fused", *NAMES)
    logits, y = heldout_logits(members, seed=5)
    st = StackedPrediction(list(NAMES))
    w = st.fit(logits, y)
    lp = torch.stack([torch.log_softmax(logits[m], 1) for m in members])
    residual, _ = kkt_residual(lp, y, w)
    assert residual <= 1e-6 and abs(float(w.sum()) - 1) <= 1e-12
    assert StackedPrediction(list(NAMES), with_fused=False).members == NAMES


# ----------------------------------------------------------------------- G-Blending
def test_gblend_estimate_is_delta_g_over_delta_o_squared_normalised():
    """Wang, Tran, Feiszli, CVPR 2020, Eq. 6 / Alg. 1: per head, dG = L_val(start) - L_val(end),
    O = L_val - L_train, dO = O(end) - O(start), w proportional to dG / dO^2, sum 1."""
    start = {"fused": (1.40, 1.50), "audio": (1.30, 1.45), "visual": (1.60, 1.62)}
    end = {"fused": (0.70, 1.10), "audio": (0.90, 1.20), "visual": (1.40, 1.47)}
    raw = {}
    for h in start:
        d_g = start[h][1] - end[h][1]
        d_o = (end[h][1] - end[h][0]) - (start[h][1] - start[h][0])
        raw[h] = d_g / d_o ** 2
    total = sum(raw.values())
    weights, info, fallback = blending_weights(start, end, {h: 1 / 3 for h in start}, delta_o_min=1e-6)
    assert not fallback
    for h in start:
        assert abs(weights[h] - raw[h] / total) <= 1e-12
    gb = GBlending(list(NAMES), estimate="online", super_epoch=1, w_min=0.0, delta_o_min=1e-6)
    gb.begin(train_losses={h: v[0] for h, v in start.items()}, val_losses={h: v[1] for h, v in start.items()})
    gb.end_epoch(0, train_losses={h: v[0] for h, v in end.items()}, val_losses={h: v[1] for h, v in end.items()})
    assert all(abs(gb.weights[h] - raw[h] / total) <= 1e-12 for h in start)
