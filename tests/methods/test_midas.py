"""MIDAS: the pieces (soft-target weights, hard-sample weights, the α rule, the warm-up
length), the warm-up step, options refused by name, and training by name on
three-modality bring-your-own data through the CLI with evaluation and exact resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import MIDAS, swap_weights, update_alpha
from ogmge.methods.midas import default_warmup, hard_weights, swap_features
from ogmge.training import load_run
from ogmge.training.factory import method_model_options
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.method_helpers import batch, tiny_model
from support.training_standins import generic_model, resumed_equals_uninterrupted, tiny_config

NAMES = ("audio", "visual", "text")


# ------------------------------------------------------------------------ pieces
def test_swap_weights_two_modalities_are_the_released_audio_and_video_weights():
    ca = torch.tensor([0.9, 0.2, 0.5, 0.4], dtype=torch.float64)
    cv = torch.tensor([0.1, 0.6, 0.3, 0.8], dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    conf = {"audio": ca, "visual": cv}
    # (a_i, v_pi(i)): weight on y_pi(i) is the video weight 1 - ca / (ca + cv[perm])
    torch.testing.assert_close(swap_weights(conf, "visual", perm), 1 - ca / (ca + cv[perm]), rtol=1e-12, atol=0)
    # (a_pi(i), v_i): weight on y_pi(i) is the audio weight ca[perm] / (ca[perm] + cv)
    torch.testing.assert_close(swap_weights(conf, "audio", perm), ca[perm] / (ca[perm] + cv), rtol=1e-12, atol=0)


def test_swap_weights_three_modalities_use_the_others_mean():
    c = {"a": torch.tensor([0.2, 0.7]), "b": torch.tensor([0.4, 0.1]), "c": torch.tensor([0.6, 0.9])}
    perm = torch.tensor([1, 0])
    got = swap_weights(c, "b", perm)
    expected = torch.tensor([0.1 / (0.1 + 0.4), 0.4 / (0.4 + 0.8)])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_hard_weights_lie_in_one_to_two():
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    perm = torch.tensor([1, 0, 2])
    torch.testing.assert_close(hard_weights(f, perm), torch.tensor([1.0, 1.0, 2.0]))
    assert not hard_weights(f.requires_grad_(), perm).requires_grad


def test_swap_features_replaces_one_modality_only():
    f = {"a": torch.arange(3.0)[:, None], "b": torch.arange(3.0)[:, None] + 10}
    out = swap_features(f, "b", torch.tensor([2, 0, 1]))
    assert torch.equal(out["a"], f["a"]) and out["b"].flatten().tolist() == [12.0, 10.0, 11.0]


@pytest.mark.parametrize(("alpha", "uni", "mm", "expected"), [
    (1.0, 1.5, 2.0, 1.05),   # first stronger, mixed pairs lean further to it: up
    (1.2, 1.5, 1.2, 1.15),   # first stronger, mixed pairs lean less: down
    (1.0, 1.5, 1.2, 1.0),    # floored at 1
    (1.0, 0.5, 0.3, 1.05),   # second stronger, mixed pairs lean further to it: up
    (1.3, 0.5, 0.7, 1.25),   # second stronger, leaning less: down
    (1.3, 1.0, 0.9, 1.35),   # tie: the second branch (released uni_ratio > 1 is strict)
])
def test_alpha_rule(alpha, uni, mm, expected):
    assert update_alpha(alpha, uni, mm, 0.05) == pytest.approx(expected, abs=1e-12)


def test_alpha_cap_when_given():
    assert update_alpha(9.98, 2.0, 3.0, 0.05, cap=10.0) == 10.0
    assert update_alpha(1.0, 2.0, 1.0, 0.05, cap=10.0) == 1.0


@pytest.mark.parametrize(("epochs", "warmup"), [(70, 10), (30, 4), (12, 2), (2, 0), (0, 0), (None, 10)])
def test_default_warmup_scales_the_authors_10_of_70(epochs, warmup):
    assert default_warmup(epochs) == warmup


# ------------------------------------------------------------------------ steps
def test_warmup_trains_the_heads_only_and_draws_nothing():
    model = tiny_model(NAMES)
    md = MIDAS(NAMES, model.fusion, warmup=2, seed=4)
    state = md.generators.get("cpu").get_state().clone()
    md.begin_epoch(1, train_size=16)
    x, y = batch(NAMES, n=8)
    out = model(x, labels=y)
    total, terms = md.loss(out.logits, y, head_logits=out.head_logits, features=out.features)
    expected = sum(F.cross_entropy(out.head_logits[u], y) for u in NAMES) / 3
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=0)
    total.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.fusion.parameters())
    assert torch.equal(md.generators.get("cpu").get_state(), state)
    assert md.alpha == 1.0 and set(terms) == {"fused", *NAMES}


def test_after_warmup_the_fusion_trains_and_alpha_moves():
    model = tiny_model(NAMES)
    md = MIDAS(NAMES, model.fusion, warmup=0, eta=0.05, seed=4)
    md.begin_epoch(0, train_size=16)
    alphas = []
    for seed in range(6):
        x, y = batch(NAMES, n=12, seed=seed)
        out = model(x, labels=y)
        total, terms = md.loss(out.logits, y, head_logits=out.head_logits, features=out.features)
        alphas.append(md.alpha)
    assert "mixed" in terms and torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.any() for p in model.fusion.parameters())
    assert all(a >= 1.0 for a in alphas)
    assert all(abs(round((a - 1) / 0.05) * 0.05 - (a - 1)) < 1e-9 for a in alphas)


def test_state_round_trip_continues_the_same_permutations():
    model = tiny_model(NAMES)
    a = MIDAS(NAMES, model.fusion, warmup=0, seed=9)
    x, y = batch(NAMES, n=10)
    out = model(x, labels=y)
    a.loss(out.logits, y, head_logits=out.head_logits, features=out.features)
    b = MIDAS(NAMES, model.fusion, warmup=0, seed=123)
    b.load_state_dict(a.state_dict())
    assert b.alpha == a.alpha
    ga, gb = a.generators.get("cpu"), b.generators.get("cpu")
    assert torch.equal(torch.randperm(10, generator=ga), torch.randperm(10, generator=gb))
    with pytest.raises(ValueError, match="modalities"):
        MIDAS(("audio", "visual"), model.fusion).load_state_dict(a.state_dict())


def test_needs_head_logits_and_features():
    model = tiny_model(NAMES)
    md = MIDAS(NAMES, model.fusion, warmup=0)
    x, y = batch(NAMES, n=6)
    out = model(x, labels=y)
    with pytest.raises(ValueError, match="head_logits"):
        md.loss(out.logits, y, features=out.features)
    with pytest.raises(ValueError, match="features"):
        md.loss(out.logits, y, head_logits=out.head_logits)


@pytest.mark.parametrize(("key", "value"), [("warmup", -1), ("eta", 0.0), ("mixed_weight", -0.5), ("eta", "x"),
                                          ("alpha_max", 0.5)])
def test_bad_options_are_refused_by_name(key, value):
    with pytest.raises((ValueError, TypeError), match=key):
        MIDAS.resolve_options({key: value})


def test_one_modality_is_refused(tmp_path):
    with pytest.raises(ValueError, match="midas.*2 or more"):
        method_model_options(tiny_config(tmp_path, method="midas"), 1)


# ------------------------------------------------------------------------ through the trainer
def test_cli_trains_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "midas"
    assert train_cli(path, "midas", run, "--method-opt", "warmup=1", epochs=3) == 0
    assert results(run)["method"] == "midas" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert all("midas_alpha" in t for t in trace)
    assert any("midas_uni_ratio" in t for t in trace) and any("midas_uni_ratio" not in t for t in trace)
    capsys.readouterr()
    assert evaluates(run / "best.pt")


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    def cfg(where):
        return tiny_config(where, method={"name": "midas", "warmup": 1}, model_options={"hidden": 8, "out_dim": 8})

    _, _, a, b = resumed_equals_uninterrupted(cfg, tmp_path, model=generic_model)
    assert a["method"]["alpha"] == b["method"]["alpha"]


def test_missing_samples_leave_the_mixed_mean():
    from ogmge.methods.midas import confidences, midas_mixed_loss

    model = tiny_model(NAMES)
    x, y = batch(NAMES, n=8, seed=2)
    out = model(x, labels=y)
    conf = confidences(out.head_logits, y)
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])

    def mixed(keep):
        return midas_mixed_loss(model.fusion, out.features, y, conf, perm, 1.3, NAMES, keep)[0]

    def only(*rows):
        k = torch.zeros(8, dtype=torch.bool)
        k[list(rows)] = True
        return k

    # sample 3 missing: the pair (2, 3) leaves the mean, both of its rows
    got = mixed(~only(3))
    expected = (mixed(only(0, 1)) + mixed(only(4, 5)) + mixed(only(6, 7))) / 3
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(mixed(torch.ones(8, dtype=torch.bool)), mixed(None), rtol=1e-12, atol=0)


def test_reduced_precision_features_reach_a_float32_head():
    from ogmge.methods.midas import confidences, midas_mixed_loss

    model = tiny_model(NAMES, dtype=torch.float32)
    x, y = batch(NAMES, n=8, dtype=torch.float32)
    out = model(x, labels=y)
    feats = {u: f.to(torch.bfloat16) for u, f in out.features.items()}
    conf = confidences(out.head_logits, y)
    mixed, r, rho = midas_mixed_loss(model.fusion, feats, y, conf, torch.arange(8).flip(0), 1.0, NAMES)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed) and torch.isfinite(r) and torch.isfinite(rho)
    mixed.backward()
