"""OPM against its authors' released update (GeWu-Lab/BML_TPAMI2024, code/models/Classifier.py).

The oracles below are written from the released code's semantics in plain tensor algebra
(``calcu_q``, ``Modality_drop.execute_drop``); nothing of ``ogmge`` is called for the math.
Tolerances are fixed before the comparison: masks exactly, numbers
``rtol=1e-6, atol=1e-12 * scale`` in float64.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from ogmge import OPM
from ogmge.contracts import ModalitySpec
from ogmge.methods import OPMMethod
from ogmge.models import build_model
from ogmge.training import TrainConfig

RTOL = 1e-6


def close(actual, expected):
    scale = float(expected.abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=1e-12 * max(scale, 1.0))


def released_q(p1, p2, q_base, lam):
    """``calcu_q`` (Classifier.py:58-71): two modalities, q in float32 as released."""
    r1 = torch.tanh(torch.relu(p1 / p2 - 1))
    r2 = torch.tanh(torch.relu(p2 / p1 - 1))
    q = torch.zeros(2)
    q[0] = q_base * (1 + lam * r1) if r1 > 0 else 0.0
    q[1] = q_base * (1 + lam * r2) if r2 > 0 else 0.0
    return q.clamp(0.0, 1.0)


def released_drop(features, q, dims, batch, seed):
    """``execute_drop`` (Classifier.py:31-55) on the global stream seeded with ``seed``, after
    the one uniform OPM draws for the ``p_exe`` decision (the released code draws that one
    from numpy; with p_exe = 1 it always executes)."""
    n = len(features)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.rand(())
        mask = torch.distributions.Bernoulli(1 - q).sample([batch, 1]).permute(2, 1, 0).contiguous()
        mask = mask.reshape(n, batch, -1)
    theta = (dims * q).sum() / dims.sum()
    stacked = torch.stack(features, dim=0) * mask.to(features[0].dtype)
    stacked = stacked / (1 - theta.item())
    update_flag = mask.transpose(0, 1).squeeze(-1).sum(dim=1) > 0
    return stacked, mask.squeeze(-1) > 0, theta, update_flag


def test_the_shared_factor_of_two_512_wide_modalities_is_the_released_figure():
    masks = OPM(p_exe=1.0).sample({"audio": 2.0, "visual": 0.5}, 4)
    g = torch.Generator().manual_seed(0)
    feats = {"audio": torch.randn(4, 512, generator=g, dtype=torch.float64),
             "visual": torch.randn(4, 512, generator=g, dtype=torch.float64)}
    out = masks.apply(feats)
    q_a = 0.5 * (1 + 0.5 * math.tanh(2.0 - 1.0))
    theta = (512 * q_a + 512 * 0.0) / 1024
    factor = 1 / (1 - theta)
    assert abs(factor - 1.5272) < 1e-4  # the TPAMI code's figure (x1.53 for both)
    for n in ("audio", "visual"):
        keep = masks.keep[n].to(torch.float64).view(4, 1)
        close(out[n], feats[n] * keep * factor)
    assert bool(masks.keep["visual"].all())


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_masks_and_scale_reproduce_the_released_code_on_a_fixed_draw(seed):
    batch, dim = 64, 512
    g = torch.Generator().manual_seed(seed + 1000)
    scores = {"audio": torch.rand((), generator=g) * 40 + 20, "visual": torch.rand((), generator=g) * 20 + 5}
    feats = [torch.randn(batch, dim, generator=g) for _ in range(2)]
    q_ref = released_q(scores["audio"], scores["visual"], 0.5, 0.5)
    stacked, mask, theta, update_flag = released_drop(feats, q_ref, torch.tensor([dim, dim]), batch, seed)

    opm = OPM(p_exe=1.0, seed=seed)
    masks = opm.sample(opm.ratios(scores), batch, widths={"audio": dim, "visual": dim})
    assert torch.equal(masks.keep["audio"], mask[0]) and torch.equal(masks.keep["visual"], mask[1])
    assert torch.equal(masks.sample_keep, update_flag)
    torch.testing.assert_close(torch.stack([masks.drop_probabilities[n] for n in ("audio", "visual")]), q_ref)
    torch.testing.assert_close(masks.theta(), theta)
    out = masks.apply({"audio": feats[0], "visual": feats[1]})
    torch.testing.assert_close(out["audio"], stacked[0])
    torch.testing.assert_close(out["visual"], stacked[1])
    assert 0 < int((~mask[0]).sum()) < batch  # the draw drops some, keeps some


def test_unequal_widths_weigh_theta_by_width():
    masks = OPM(p_exe=1.0).sample({"a": 3.0, "b": 0.2}, 8, widths={"a": 100, "b": 300})
    q_a = 0.5 * (1 + 0.5 * math.tanh(2.0))
    assert abs(float(masks.theta()) - 100 * q_a / 400) < 1e-6
    assert all(abs(float(s) - 1 / (1 - 100 * q_a / 400)) < 1e-6 for s in masks.scales.values())


def test_one_step_through_the_model_in_float64_matches_the_released_forward():
    torch.manual_seed(3)
    specs = {n: ModalitySpec(n, "vector", (6,)) for n in ("audio", "visual")}
    opm = OPM(p_exe=1.0, seed=5, start_epoch=0)
    model = build_model(specs, num_classes=4, fusion="concat", hidden=8, out_dim=5,
                        feature_transform=OPMMethod(opm)).double().train()
    with torch.no_grad():
        model.fusion.fc.weight[:, :5].mul_(6.0)  # audio dominant
    g = torch.Generator().manual_seed(9)
    x = {n: torch.randn(32, 6, generator=g, dtype=torch.float64) for n in ("audio", "visual")}
    with torch.no_grad():
        y = model.eval()(x).modality_logits["audio"].argmax(1)
    model.train()
    out = model(x, labels=y)

    # oracle: the released forward (Classifier.forward with warm_up=0), draws taken from ours
    fa, fv = out.features["audio"].detach(), out.features["visual"].detach()
    w, b = model.fusion.fc.weight.detach(), model.fusion.fc.bias.detach()
    t1 = fa @ w[:, :5].T + b / 2
    t2 = fv @ w[:, 5:].T + b / 2
    p1 = torch.softmax(t1, 1).gather(1, y.view(-1, 1)).sum()
    p2 = torch.softmax(t2, 1).gather(1, y.view(-1, 1)).sum()
    r1, r2 = torch.tanh(torch.relu(p1 / p2 - 1)), torch.tanh(torch.relu(p2 / p1 - 1))
    q = torch.stack([0.5 * (1 + 0.5 * r1) * (r1 > 0), 0.5 * (1 + 0.5 * r2) * (r2 > 0)]).clamp(0, 1)
    close(torch.stack([model.feature_transform.masks.drop_probabilities["audio"], model.feature_transform.masks.drop_probabilities["visual"]]), q)
    ma = model.feature_transform.masks.keep["audio"].double().view(-1, 1)
    mv = model.feature_transform.masks.keep["visual"].double().view(-1, 1)
    theta = (5 * q[0] + 5 * q[1]) / 10
    fused = torch.cat([fa * ma, fv * mv], 1) / (1 - theta) @ w.T + b
    close(out.logits.detach(), fused)
    keep = (ma + mv).view(-1) > 0
    assert torch.equal(out.sample_keep, keep) and q[0] > 0
    loss_ref = F.cross_entropy(fused[keep], y[keep])
    from ogmge.methods import cross_entropy

    close(cross_entropy(out.logits, y, out.sample_keep).detach(), loss_ref)


def test_warm_up_window_follows_the_released_trainer():
    opm = OPM(p_exe=1.0, q_base=1.0, seed=0)  # q_base 1: the dominant modality always dropped when active
    ratios = {"audio": 2.0, "visual": 0.5}
    for epoch, active in ((0, False), (5, False), (6, True), (90, True)):
        opm.set_epoch(epoch)
        m = opm.sample(ratios, 16, widths={"audio": 4, "visual": 4})
        assert bool(m.executed) is active
        assert bool(m.keep["audio"].all()) is (not active)
        assert all(float(s) == (2.0 if active else 1.0) for s in m.scales.values())  # theta = 1/2
    bounded = OPM(p_exe=1.0, start_epoch=0, end_epoch=3)
    assert bounded.is_active(3) and not bounded.is_active(4)
    assert OPM().is_active()  # no epoch known: active (the plain API)


def test_three_modalities_mean_by_default_and_sum_as_balancebenchmark():
    scores = {"a": torch.tensor(6.0, dtype=torch.float64), "b": torch.tensor(3.0, dtype=torch.float64),
              "c": torch.tensor(1.0, dtype=torch.float64)}
    mean = OPM().ratios(scores)
    total = OPM(ratio="sum").ratios(scores)
    for n, others in (("a", (3.0, 1.0)), ("b", (6.0, 1.0)), ("c", (6.0, 3.0))):
        s = float(scores[n])
        assert abs(float(mean[n]) - s / (sum(others) / 2)) < 1e-12
        assert abs(float(total[n]) - s / sum(others)) < 1e-12
    two = {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}
    assert float(OPM(ratio="sum").ratios(two)["a"]) == float(OPM().ratios(two)["a"]) == 0.5


def test_per_modality_rescale_is_the_earlier_rule_by_its_own_name():
    m = OPM(p_exe=1.0, rescale="per_modality").sample({"audio": 2.0, "visual": 0.5}, 4)
    q_a = 0.5 * (1 + 0.5 * math.tanh(1.0))
    assert abs(float(m.scales["audio"]) - 1 / (1 - q_a)) < 1e-6 and float(m.scales["visual"]) == 1.0
    with pytest.raises(ValueError, match="rescale"):
        OPM(rescale="own")


def test_run_configs_saved_before_the_shared_rescale_resume_with_the_rule_they_started_with():
    saved = {k: v for k, v in TrainConfig(opm=True).to_dict().items() if k not in ("method_class", "prediction")}
    saved.update(opm_q_base=0.5, opm_lam=0.5, opm_p_exe=0.7, gblend_super_epoch=2, gblend_w_min=0.05,
                 gblend_delta_o_min=0.01, mdrop_p=0.5, mmpareto_scale=1.5, anchored_weight=1.0)  # saved then
    old = TrainConfig.from_dict(saved)
    assert (old.opm_rescale, old.opm_starts) == ("per_modality", 0)
    new = TrainConfig.from_dict({"opm": True, "opm_q_base": 0.4})  # a user's YAML: the paper's rule
    assert (new.opm_rescale, new.opm_starts, new.opm_ends) == ("shared", 6, None)
