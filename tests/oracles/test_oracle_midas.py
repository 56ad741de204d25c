"""MIDAS, re-derived in float64 from the authors' released forward
(Seong-HyeonHwang/MIDAS_NeurIPS2025 models/model_midas_cremad.py l.104-171) for two modalities,
written out swap by swap as the released code does, and from the N-modality rule stated in
docs/methods.md for three; independently of ``ogmge.methods.midas``.

The permutation is drawn from a copy of our generator's state and fed to the oracle. Tolerances,
fixed before any comparison: ``rtol=1e-6, atol=1e-12 * scale`` (scale: the largest magnitude
compared, at least 1); α is compared exactly (the same ±0.05 steps).
"""

import pytest
import torch
import torch.nn.functional as F

from ogmge.contracts import ModalitySpec
from ogmge.methods import MIDAS
from ogmge.models import build_model

C, B, D, FEAT = 4, 24, 6, 5


def close(actual, expected):
    scale = max(float(expected.detach().abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12 * scale)


def model64(names, seed=0):
    torch.manual_seed(seed)
    specs = {n: ModalitySpec(n, "vector", (D,)) for n in names}
    return build_model(specs, num_classes=C, fusion="concat", hidden=7, out_dim=FEAT, heads=True).double().train()


def data(names, seed, strong):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=g)
    x = {n: torch.randn(B, D, generator=g, dtype=torch.float64) for n in names}
    x[strong][torch.arange(B), y] += 3.0
    return x, y


def next_perm(method):
    g = torch.Generator()
    g.set_state(method.generators.get("cpu").get_state().clone())
    return torch.randperm(B, generator=g)


def prob(z, t):
    return torch.softmax(z, 1)[torch.arange(len(t)), t]


def released_two(model, x, y, perm, alpha, eta=0.05, flip=False):
    """The released forward after warm-up, audio = "audio", video = "visual" (flip: α on the stronger)."""
    out = model(x, labels=y)
    fa, fv = out.features["audio"], out.features["visual"]
    la, lv = out.head_logits["audio"], out.head_logits["visual"]
    ca, cv = prob(la.detach(), y), prob(lv.detach(), y)
    uni = (F.cross_entropy(la, y) + F.cross_entropy(lv, y)) / 2
    loss = F.cross_entropy(out.logits, y)
    uni_ratio = ca.mean() / cv.mean()
    audio_strong = bool(uni_ratio > 1) != flip
    ce = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    # pair 1: audio of i, video of pi(i)
    z1 = model.fusion({"audio": fa, "visual": fv[perm]})
    wa = ca / (ca + cv[perm])
    wv = 1 - wa
    if audio_strong:
        m1 = wa * ce(z1, y) + alpha * wv * ce(z1, y[perm])
    else:
        m1 = alpha * wa * ce(z1, y) + wv * ce(z1, y[perm])
    mixed = (1 + (F.cosine_similarity(fv, fv[perm], dim=1).detach() + 1) / 2) * m1
    r1 = prob(z1, y).detach().mean() / prob(z1, y[perm]).detach().mean()
    # pair 2: audio of pi(i), video of i
    z2 = model.fusion({"audio": fa[perm], "visual": fv})
    wa = ca[perm] / (ca[perm] + cv)
    wv = 1 - wa
    if audio_strong:
        m2 = wa * ce(z2, y[perm]) + alpha * wv * ce(z2, y)
    else:
        m2 = alpha * wa * ce(z2, y[perm]) + wv * ce(z2, y)
    mixed = mixed + (1 + (F.cosine_similarity(fa, fa[perm], dim=1).detach() + 1) / 2) * m2
    r2 = prob(z2, y[perm]).detach().mean() / prob(z2, y).detach().mean()
    total = loss + mixed.mean() / 2 + uni
    mm = (r1 + r2) / 2
    if uni_ratio > 1:
        new = alpha + eta if mm > uni_ratio else alpha - eta
    else:
        new = alpha + eta if mm < uni_ratio else alpha - eta
    return total, max(1, new), bool(uni_ratio > 1)


def ours(model, method, x, y):
    out = model(x, labels=y)
    total, _ = method.loss(out.logits, y, head_logits=out.head_logits, features=out.features)
    return total


def grads_of(total, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(total, params, allow_unused=True), params


def test_two_modalities_match_the_released_forward_over_several_steps_both_branches():
    names = ("audio", "visual")
    branches = set()
    for strong in names:
        model = model64(names, seed=1)
        method = MIDAS(names, model.fusion, warmup=0, seed=7)
        method.begin_epoch(0, train_size=B)
        method.alpha = 1.35  # α above its floor, so the weighting shows
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for step in range(4):
            x, y = data(names, 10 * step + (strong == "visual"), strong)
            perm, alpha = next_perm(method), method.alpha
            expected, new_alpha, branch = released_two(model, x, y, perm, alpha)
            g_exp, params = grads_of(expected, model)
            got = ours(model, method, x, y)
            close(got, expected)
            g_got, _ = grads_of(got, model)
            for a, b in zip(g_got, g_exp):
                if b is not None:
                    close(a, b)
            assert method.alpha == pytest.approx(new_alpha, abs=1e-12)
            branches.add(branch)
            opt.zero_grad()
            for p, g in zip(params, g_exp):
                p.grad = None if g is None else g.clone()
            opt.step()
    assert branches == {True, False}  # both the audio-stronger and the video-stronger rules were checked


def test_the_oracle_tells_a_flipped_weighting_apart():
    names = ("audio", "visual")
    model = model64(names, seed=1)
    method = MIDAS(names, model.fusion, warmup=0, seed=7)
    method.alpha = 1.35
    x, y = data(names, 0, "audio")
    perm = next_perm(method)
    flipped, _, _ = released_two(model, x, y, perm, 1.35, flip=True)
    got = ours(model, method, x, y)
    got, flipped = float(got.detach()), float(flipped.detach())
    assert abs(got - flipped) > 1e-4 * max(1.0, abs(flipped))


def general_step(model, x, y, perm, alpha, names, eta=0.05):
    """docs/methods.md's N-modality rule, written from the equations."""
    out = model(x, labels=y)
    f, h = out.features, out.head_logits
    c = {u: prob(h[u].detach(), y) for u in names}
    n = len(names)
    uni = sum(F.cross_entropy(h[u], y) for u in names) / n
    acc = torch.zeros(B, dtype=torch.float64)
    r_list, rho_list = [], []
    for u in names:
        swapped = {w: (f[w][perm] if w == u else f[w]) for w in names}
        z = model.fusion(swapped)
        rest_conf = sum(c[w] for w in names if w != u) / (n - 1)
        w_swap = c[u][perm] / (c[u][perm] + rest_conf)
        ce_rest = F.cross_entropy(z, y, reduction="none")
        ce_swap = F.cross_entropy(z, y[perm], reduction="none")
        cbar_u = c[u].mean()
        cbar_rest = sum(c[w].mean() for w in names if w != u) / (n - 1)
        p_rest, p_swap = prob(z, y).detach().mean(), prob(z, y[perm]).detach().mean()
        if u == names[0]:  # first side = the swapped modality
            r, rho = cbar_u / cbar_rest, p_swap / p_rest
            weak_swapped = not (r > 1)
        else:  # first side = the rest
            r, rho = cbar_rest / cbar_u, p_rest / p_swap
            weak_swapped = r > 1
        a_swap, a_rest = (alpha, 1.0) if weak_swapped else (1.0, alpha)
        hard = 1 + (F.cosine_similarity(f[u], f[u][perm], dim=1).detach() + 1) / 2
        acc = acc + hard * (a_rest * (1 - w_swap) * ce_rest + a_swap * w_swap * ce_swap)
        r_list.append(r)
        rho_list.append(rho)
    total = F.cross_entropy(out.logits, y) + acc.mean() / n + uni
    r_bar, rho_bar = sum(r_list) / n, sum(rho_list) / n
    up = rho_bar > r_bar if r_bar > 1 else rho_bar < r_bar
    return total, max(1.0, alpha + eta if up else alpha - eta)


def test_three_modalities_match_the_stated_generalisation():
    names = ("audio", "visual", "text")
    model = model64(names, seed=2)
    method = MIDAS(names, model.fusion, warmup=0, seed=11)
    method.alpha = 1.2
    for step in range(3):
        x, y = data(names, 5 + step, ("visual", "audio", "text")[step])
        perm, alpha = next_perm(method), method.alpha
        expected, new_alpha = general_step(model, x, y, perm, alpha, names)
        g_exp, _ = grads_of(expected, model)
        got = ours(model, method, x, y)
        close(got, expected)
        for a, b in zip(grads_of(got, model)[0], g_exp):
            if b is not None:
                close(a, b)
        assert method.alpha == pytest.approx(new_alpha, abs=1e-12)


def test_three_modality_rule_reduces_to_the_released_one_for_two():
    names = ("audio", "visual")
    model = model64(names, seed=3)
    x, y = data(names, 4, "visual")
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(0))
    a, na, _ = released_two(model, x, y, perm, 1.4)
    b, nb = general_step(model, x, y, perm, 1.4, names)
    close(b, a)
    assert na == pytest.approx(nb, abs=1e-12)
