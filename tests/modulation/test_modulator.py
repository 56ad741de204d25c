"""OGMGE against a reference that mirrors the official control flow, GE noise
statistics, and the modulator's properties."""

import copy
import math

import pytest
import torch
from torch import nn

from ogmge import OGMGE


class TwoStream(nn.Module):
    """Two conv encoders (conv + BN + linear) and a concat fusion head."""

    def __init__(self, classes=5):
        super().__init__()
        self.audio_net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8),
        )
        self.visual_net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8),
        )
        self.fc_out = nn.Linear(16, classes)

    def forward(self, a, v):
        fa, fv = self.audio_net(a), self.visual_net(v)
        out = self.fc_out(torch.cat([fa, fv], dim=1))
        w, b = self.fc_out.weight, self.fc_out.bias
        out_a = fa @ w[:, :8].t() + b / 2
        out_v = fv @ w[:, 8:].t() + b / 2
        return out, out_a, out_v


def _official_reference(model, out_a, out_v, label, alpha):
    """Mirror of the official per-step control flow (OGM mode)."""
    softmax = nn.Softmax(dim=1)
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v = 1 - math.tanh(alpha * torch.relu(ratio_v))
        coeff_a = 1
    else:
        coeff_a = 1 - math.tanh(alpha * torch.relu(ratio_a))
        coeff_v = 1
    for name, parms in model.named_parameters():
        layer = name.split(".")[0]
        if "audio" in layer and len(parms.grad.size()) == 4:
            parms.grad *= coeff_a
        if "visual" in layer and len(parms.grad.size()) == 4:
            parms.grad *= coeff_v
    return float(coeff_a), float(coeff_v)


def _backward(model, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 1, 8, 8, generator=g)
    v = torch.randn(6, 3, 8, 8, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    out, out_a, out_v = model(a, v)
    nn.functional.cross_entropy(out, y).backward()
    return out_a.detach(), out_v.detach(), y


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ogm_matches_official_control_flow(seed):
    torch.manual_seed(seed)
    model = TwoStream()
    out_a, out_v, y = _backward(model, seed)
    ref_model = copy.deepcopy(model)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        q.grad = p.grad.clone()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_k = _official_reference(ref_model, out_a, out_v, y, alpha=0.8)
    mod = OGMGE({"audio": model.audio_net, "visual": model.visual_net}, mode="OGM", alpha=0.8)
    stats = mod.step(modality_logits={"audio": out_a, "visual": out_v}, labels=y, epoch=0)

    assert float(stats.coefficients["audio"]) == pytest.approx(ref_k[0], rel=1e-6)
    assert float(stats.coefficients["visual"]) == pytest.approx(ref_k[1], rel=1e-6)
    assert min(ref_k) < 1  # one encoder was actually modulated
    for (name, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)
        if p.dim() != 4:  # BatchNorm, biases, encoder linears, fusion head: bit-identical
            assert torch.equal(p.grad, before[name]), name


def _big_grad_encoders(sigma=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    enc = {}
    for name in ("audio", "visual"):
        conv = nn.Parameter(torch.zeros(1000, 10, 10, 10))
        lin = nn.Parameter(torch.zeros(50, 20))
        conv.grad = torch.randn(conv.shape, generator=g) * sigma
        lin.grad = torch.randn(lin.shape, generator=g) * sigma
        enc[name] = [conv, lin]
    return enc


def _dominant_logits(dominant="audio", n=64, classes=4):
    y = torch.arange(n) % classes
    strong = torch.full((n, classes), -2.0)
    strong[torch.arange(n), y] = 2.0
    weak = torch.zeros(n, classes)
    return ({"audio": strong, "visual": weak} if dominant == "audio" else {"audio": weak, "visual": strong}), y


@pytest.mark.parametrize("chunk", [None, 1])
def test_ge_noise_statistics_on_dominant_and_unit_encoders(chunk, monkeypatch):
    if chunk is not None:  # one noise draw per tensor instead of one per encoder
        monkeypatch.setattr("ogmge.modulation.ogmge.NOISE_CHUNK", chunk)
        monkeypatch.setattr("ogmge.modulation.ogmge.NOISE_CHUNK_CPU", chunk)
    sigma = 0.01
    enc = _big_grad_encoders(sigma)
    before = {n: [p.grad.clone() for p in ps] for n, ps in enc.items()}
    mod = OGMGE(enc, mode="OGM_GE", alpha=0.8, seed=123)
    logits, y = _dominant_logits("audio")
    stats = mod.step(modality_logits=logits, labels=y, epoch=0)
    k = {n: float(v) for n, v in stats.coefficients.items()}
    assert k["audio"] < 1 and k["visual"] == 1.0
    for name in ("audio", "visual"):
        conv, lin = enc[name]
        residual = conv.grad - k[name] * before[name][0]
        assert abs(float(residual.mean())) < 0.03 * sigma, name
        assert abs(float(residual.std()) - sigma) < 0.01 * sigma, name
        assert torch.equal(lin.grad, before[name][1]), f"rank-2 tensor of {name} changed under select='conv'"


def test_noise_only_where_modulated_option():
    enc = _big_grad_encoders()
    before = {n: enc[n][0].grad.clone() for n in enc}
    mod = OGMGE(enc, mode="OGM_GE", noise="modulated")
    logits, y = _dominant_logits("visual")
    stats = mod.step(modality_logits=logits, labels=y, epoch=0)
    assert torch.equal(enc["audio"][0].grad, before["audio"])
    k_v = float(stats.coefficients["visual"])
    assert k_v < 1
    assert float((enc["visual"][0].grad - k_v * before["visual"]).std()) > 0.005


def _small_setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    enc = {n: [nn.Parameter(torch.zeros(4, 3, 3, 3)), nn.Parameter(torch.zeros(7))] for n in ("a", "b")}
    for ps in enc.values():
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
    logits = {"a": torch.randn(8, 3, generator=g) * 3, "b": torch.randn(8, 3, generator=g)}
    y = torch.randint(0, 3, (8,), generator=g)
    return enc, logits, y


def _grads(enc):
    return [p.grad.clone() for ps in enc.values() for p in ps]


@pytest.mark.parametrize("epoch,changes", [(1, False), (2, True), (5, True), (6, False)])
def test_window_is_inclusive(epoch, changes):
    enc, logits, y = _small_setup()
    before = _grads(enc)
    mod = OGMGE(enc, mode="OGM_GE", start_epoch=2, end_epoch=5)
    stats = mod.step(modality_logits=logits, labels=y, epoch=epoch)
    after = _grads(enc)
    same = all(torch.equal(x, z) for x, z in zip(before, after))
    assert same != changes
    assert stats.modulated == changes
    assert (stats.skip_reason == "outside window") == (not changes)


def test_normal_mode_measures_but_never_touches():
    enc, logits, y = _small_setup()
    before = _grads(enc)
    stats = OGMGE(enc, mode="Normal").step(modality_logits=logits, labels=y, epoch=0)
    assert all(torch.equal(x, z) for x, z in zip(before, _grads(enc)))
    assert stats.skip_reason == "mode Normal" and not stats.modulated
    assert set(stats.to_floats()) >= {"score/a", "ratio/b", "coeff/a", "modulated", "skip_reason"}


def _run(seed, steps=3, state=None):
    enc, logits, y = _small_setup()
    mod = OGMGE(enc, mode="OGM_GE", seed=seed)
    if state is not None:
        mod.load_state_dict(state)
    for _ in range(steps):
        mod.step(modality_logits=logits, labels=y, epoch=0)
    return _grads(enc), mod


def test_seeded_noise_is_bit_identical_and_seeds_differ():
    g1, _ = _run(7)
    g2, _ = _run(7)
    g3, _ = _run(8)
    assert all(torch.equal(x, z) for x, z in zip(g1, g2))
    assert not all(torch.equal(x, z) for x, z in zip(g1, g3))


def test_state_dict_round_trip_continues_the_noise_stream():
    _, mod = _run(7, steps=2)
    state = copy.deepcopy(mod.state_dict())
    # continue the original for one step and a restored fresh modulator for one step
    enc_a, logits, y = _small_setup()
    mod_a = OGMGE(enc_a, mode="OGM_GE", seed=7)
    mod_a.load_state_dict(mod.state_dict())
    mod_a.step(modality_logits=logits, labels=y, epoch=0)
    enc_b, _, _ = _small_setup()
    mod_b = OGMGE(enc_b, mode="OGM_GE", seed=999)  # the seed is restored from the state
    mod_b.load_state_dict(state)
    mod_b.step(modality_logits=logits, labels=y, epoch=0)
    assert all(torch.equal(x, z) for x, z in zip(_grads(enc_a), _grads(enc_b)))


def _zero_grads(enc):
    for ps in enc.values():
        for p in ps:
            p.grad = torch.zeros_like(p)


def test_resumed_stream_equals_uninterrupted_stream():
    enc1, logits, y = _small_setup()
    m1 = OGMGE(enc1, mode="OGM_GE", seed=3)
    noises_uninterrupted = []
    for _ in range(3):
        _zero_grads(enc1)
        m1.step(modality_logits=logits, labels=y, epoch=0)
        noises_uninterrupted.append(_grads(enc1))
    enc2, _, _ = _small_setup()
    m2 = OGMGE(enc2, mode="OGM_GE", seed=3)
    _zero_grads(enc2)
    m2.step(modality_logits=logits, labels=y, epoch=0)
    saved = copy.deepcopy(m2.state_dict())
    enc3, _, _ = _small_setup()
    m3 = OGMGE(enc3, mode="OGM_GE", seed=3)
    m3.load_state_dict(saved)
    resumed = []
    for _ in range(2):
        _zero_grads(enc3)
        m3.step(modality_logits=logits, labels=y, epoch=0)
        resumed.append(_grads(enc3))
    for want, got in zip(noises_uninterrupted[1:], resumed):
        assert all(torch.equal(x, z) for x, z in zip(want, got))


def test_zero_gradient_gets_only_the_sigma_floor():
    enc, logits, y = _small_setup()
    for ps in enc.values():
        for p in ps:
            p.grad = torch.zeros_like(p)
    OGMGE(enc, mode="OGM_GE").step(modality_logits=logits, labels=y, epoch=0)
    conv = enc["a"][0].grad
    assert 0 < float(conv.abs().max()) < 1e-6  # std 0 -> sigma = 1e-8


def test_micro_batch_accumulation_equals_one_full_batch():
    enc1, logits, y = _small_setup()
    enc2, _, _ = _small_setup()
    m1 = OGMGE(enc1, mode="OGM")
    s1 = m1.step(modality_logits=logits, labels=y, epoch=0)
    m2 = OGMGE(enc2, mode="OGM")
    for part in (slice(0, 3), slice(3, 8)):
        m2.accumulate({n: t[part] for n, t in logits.items()}, y[part])
    s2 = m2.apply_(epoch=0)
    for n in ("a", "b"):
        torch.testing.assert_close(s1.coefficients[n], s2.coefficients[n], rtol=1e-6, atol=0)
    for x, z in zip(_grads(enc1), _grads(enc2)):
        torch.testing.assert_close(x, z, rtol=1e-6, atol=0)


def test_non_finite_gradient_skips_the_step():
    enc, logits, y = _small_setup()
    enc["b"][0].grad[0, 0, 0, 0] = float("inf")
    before = _grads(enc)
    stats = OGMGE(enc, mode="OGM_GE").step(modality_logits=logits, labels=y, epoch=0)
    after = _grads(enc)
    assert stats.ran and not stats.modulated
    assert stats.skip_reason == "non-finite gradients"
    for x, z in zip(before, after):
        assert torch.equal(x, z)
    enc["b"][0].grad[0, 0, 0, 0] = float("nan")
    stats = OGMGE(enc, mode="OGM").step(modality_logits=logits, labels=y, epoch=0)
    assert not stats.modulated


def test_parameters_without_grad_are_skipped():
    enc, logits, y = _small_setup()
    enc["a"][0].grad = None
    stats = OGMGE(enc, mode="OGM_GE").step(modality_logits=logits, labels=y, epoch=0)
    assert enc["a"][0].grad is None
    assert stats.modulated


def test_select_weights_and_all():
    enc, logits, y = _small_setup()
    bias_before = enc["a"][1].grad.clone()
    OGMGE(enc, mode="OGM_GE", select="weights").step(modality_logits=logits, labels=y, epoch=0)
    assert torch.equal(enc["a"][1].grad, bias_before)
    OGMGE(enc, mode="OGM_GE", select="all").step(modality_logits=logits, labels=y, epoch=0)
    assert not torch.equal(enc["a"][1].grad, bias_before)


def test_three_modalities_modulate_each_dominant_encoder():
    enc = {n: [nn.Parameter(torch.zeros(2, 2, 2))] for n in ("a", "b", "c")}
    for ps in enc.values():
        ps[0].grad = torch.ones(2, 2, 2)
    y = torch.zeros(4, dtype=torch.long)
    strong = torch.tensor([[3.0, 0.0]] * 4)
    weak = torch.zeros(4, 2)
    stats = OGMGE(enc, mode="OGM", alpha=0.5).step(
        modality_logits={"a": strong, "b": strong, "c": weak}, labels=y, epoch=0
    )
    s_strong = 4 * math.exp(3) / (math.exp(3) + 1)
    rho = s_strong / ((s_strong + 2.0) / 2)
    k = 1 - math.tanh(0.5 * rho)
    assert float(enc["a"][0].grad[0, 0, 0]) == pytest.approx(k, rel=1e-6)
    assert float(enc["b"][0].grad[0, 0, 0]) == pytest.approx(k, rel=1e-6)
    assert float(enc["c"][0].grad[0, 0, 0]) == 1.0
    assert float(stats.coefficients["c"]) == 1.0
