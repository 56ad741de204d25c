"""MCR: the pieces (JSD, permutations, the game's signs and detaching, supervised NT-Xent), bad
options named, warm start from modality-alone runs, and training by name on three bring-your-own
modalities through the CLI with evaluation and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ogmge.methods import BuildContext, get
from ogmge.methods.mcr import (
    MCR,
    draw_permutations,
    game_loss,
    game_signs,
    js_divergence,
    permuted_inputs,
    supervised_nt_xent,
)
from ogmge.training import load_checkpoint_file, load_run, train
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import (
    generic_model,
    resumed_equals_uninterrupted,
    tiny_bundle,
    tiny_config,
)


def _linear_fusion(mods, d=3, c=4, seed=0):
    lin = nn.Linear(d * len(mods), c).double()
    torch.manual_seed(seed)
    nn.init.normal_(lin.weight)

    def fusion(feats):
        return lin(torch.cat([feats[u] for u in mods], 1))

    return fusion, lin


def test_registered_with_its_declarations():
    cls = get("mcr")
    assert cls is MCR and cls.needs_heads and cls.needs_features and cls.min_modalities == 2
    assert cls.max_modalities is None
    opts = {o.name: o.default for o in cls.options}
    assert opts == {"l": 0.1, "multil": 0.01, "contr": 1.0, "tau": 0.5, "num_samples": 32, "game": "greedy",
                    "warm_start": False}


def test_jsd_is_zero_on_equal_and_symmetric():
    a = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, -1.0], [3.0, -2.0, 0.1]], dtype=torch.float64)
    assert float(js_divergence(a, a)) == pytest.approx(0.0, abs=1e-15)
    assert float(js_divergence(a, b)) == pytest.approx(float(js_divergence(b, a)), rel=1e-12)
    assert 0 < float(js_divergence(a, b)) < np.log(2)


def test_permutations_come_from_the_generator():
    p1 = draw_permutations(7, 5, torch.Generator().manual_seed(4))
    p2 = draw_permutations(7, 5, torch.Generator().manual_seed(4))
    assert p1.shape == (5, 7) and torch.equal(p1, p2)
    assert all(sorted(r.tolist()) == list(range(7)) for r in p1)


def test_permuted_inputs_shuffle_one_modality_and_detach_all_but_the_receiver():
    z = {u: torch.arange(6.0).reshape(3, 2).add(10 * i).requires_grad_(True) for i, u in enumerate("abc")}
    perms = torch.tensor([[2, 0, 1], [1, 2, 0]])
    x = permuted_inputs(z, perms, "b", "c")
    assert torch.equal(x["b"][:3], z["b"][[2, 0, 1]]) and torch.equal(x["b"][3:], z["b"][[1, 2, 0]])
    assert torch.equal(x["a"], z["a"].repeat(2, 1))
    assert x["c"].requires_grad and not x["a"].requires_grad and not x["b"].requires_grad
    assert all(t.requires_grad for t in permuted_inputs(z, perms, "b", None).values())


def test_game_signs_greedy_generalise_per_modality():
    two = game_signs(("a", "v"), "greedy")
    # the released l*(-enc0_p0 + enc1_p0 - enc1_p1 + enc0_p1): (receiver, permuted)
    assert two == {("a", "a"): -1.0, ("v", "a"): 1.0, ("v", "v"): -1.0, ("a", "v"): 1.0}
    three = game_signs(("a", "b", "c"), "greedy")
    assert len(three) == 9 and sum(three.values()) == 3.0
    assert game_signs(("a", "b"), "ind") == {("a", "a"): -1.0, ("b", "b"): -1.0}
    assert game_signs(("a", "b"), "colab") == {(None, "a"): -1.0, (None, "b"): -1.0}
    with pytest.raises(ValueError, match="game"):
        game_signs(("a", "b"), "nash")


def test_a_term_reaches_only_its_receiver():
    mods = ("a", "b", "c")
    fusion, _ = _linear_fusion(mods)
    z = {u: torch.randn(5, 3, dtype=torch.float64, requires_grad=True) for u in mods}
    perms = draw_permutations(5, 3, torch.Generator().manual_seed(0))
    target = fusion(z).detach().repeat(3, 1)
    j = js_divergence(fusion(permuted_inputs(z, perms, "b", "a")), target)
    ga, gb, gc = torch.autograd.grad(j, [z["a"], z["b"], z["c"]], allow_unused=True)
    assert ga is not None and ga.abs().sum() > 0
    assert gb is None and gc is None


def test_two_modality_greedy_leaves_the_fusion_head_no_net_gradient():
    # J_{a,m} and J_{v,m} have equal values and opposite signs: the head's gradients cancel
    mods = ("a", "v")
    fusion, lin = _linear_fusion(mods)
    z = {u: torch.randn(6, 3, dtype=torch.float64, requires_grad=True) for u in mods}
    perms = draw_permutations(6, 4, torch.Generator().manual_seed(1))
    game, divs = game_loss(fusion, z, fusion(z), perms, mods, "greedy")
    assert float(divs[("a", "a")].detach()) == pytest.approx(float(divs[("v", "a")].detach()), rel=1e-12)
    gw, gza = torch.autograd.grad(game, [lin.weight, z["a"]])
    assert float(gw.abs().max()) < 1e-12 and float(gza.abs().sum()) > 0


def test_colab_game_reaches_every_encoder_with_minus_the_divergences():
    mods = ("a", "b", "c")
    fusion, _ = _linear_fusion(mods)
    z = {u: torch.randn(5, 3, dtype=torch.float64, requires_grad=True) for u in mods}
    perms = draw_permutations(5, 2, torch.Generator().manual_seed(2))
    game, divs = game_loss(fusion, z, fusion(z), perms, mods, "colab")
    assert set(divs) == {(None, u) for u in mods}
    assert float(game.detach()) == pytest.approx(-sum(float(j.detach()) for j in divs.values()), rel=1e-12)
    assert all(float(g.abs().sum()) > 0 for g in torch.autograd.grad(game, list(z.values())))


def test_supervised_nt_xent_edge_cases_are_finite():
    z = [torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)]
    same = supervised_nt_xent(z, torch.zeros(4, dtype=torch.long), 0.5)
    assert float(same.detach()) == 0.0
    same.backward()
    assert all(torch.isfinite(t.grad).all() for t in z)
    # one modality, all labels distinct: no positive pair
    assert float(supervised_nt_xent([z[0]], torch.arange(4), 0.5).detach()) == 0.0
    val = supervised_nt_xent(z, torch.tensor([0, 1, 0, 1]), 0.5)
    assert float(val.detach()) > 0 and val.requires_grad


@pytest.mark.parametrize(("key", "value", "match"), [
    ("game", "nash", "game"), ("num_samples", 0, "num_samples"), ("tau", 0.0, "tau"), ("l", -1.0, "option l"),
    ("warm_start", "yes", "warm_start"), ("lambda", 1.0, "lambda"),
])
def test_bad_options_are_named(key, value, match):
    with pytest.raises(ValueError, match=match):
        MCR.resolve_options({key: value})


def test_unequal_feature_sizes_refuse_the_contrastive_term_only():
    fusion, _ = _linear_fusion(("a", "b"))
    ctx = BuildContext(("a", "b"), feature_dims={"a": 3, "b": 5}, num_classes=4, fusion=fusion)
    with pytest.raises(ValueError, match="contr=0"):
        MCR.build(ctx)
    assert MCR.build(ctx, contr=0.0).contr == 0.0
    with pytest.raises(ValueError, match="fusion head"):
        MCR.build(BuildContext(("a", "b"), feature_dims={"a": 3, "b": 3}, num_classes=4))


def test_loss_needs_heads_and_features():
    fusion, _ = _linear_fusion(("a", "b"))
    m = MCR(("a", "b"), fusion, num_samples=2)
    z = {u: torch.randn(4, 3, dtype=torch.float64) for u in "ab"}
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="features"):
        m.loss(fusion(z), y, head_logits={u: torch.zeros(4, 4) for u in "ab"})
    with pytest.raises(ValueError, match="head_logits"):
        m.loss(fusion(z), y, features=z)


def test_warm_start_is_the_trainers_generic_alone_run_load():
    fusion, _ = _linear_fusion(("a", "b"))
    ctx = BuildContext(("a", "b"), feature_dims={"a": 3, "b": 3}, num_classes=4, fusion=fusion)
    assert MCR.build(ctx, warm_start=True).loads_alone_encoders is True
    assert MCR.build(ctx).loads_alone_encoders is False
    assert MCR.depends_on == ("alone",)


def test_state_round_trip_continues_the_permutation_stream():
    fusion, _ = _linear_fusion(("a", "b"))
    m = MCR(("a", "b"), fusion, torch.Generator().manual_seed(5), num_samples=2)
    draw_permutations(6, 2, m.generator)
    state = m.state_dict()
    nxt = draw_permutations(6, 2, m.generator)
    other = MCR(("a", "b"), fusion, torch.Generator().manual_seed(99), num_samples=2)
    other.load_state_dict(state)
    assert torch.equal(draw_permutations(6, 2, other.generator), nxt)
    with pytest.raises(ValueError, match="modalities"):
        MCR(("a", "c"), fusion).load_state_dict(state)


# --------------------------------------------------------------- through the trainer and the CLI
def test_cli_trains_mcr_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "mcr"
    assert train_cli(path, "mcr", run, "--method-opt", "num_samples=4", epochs=2) == 0
    assert results(run)["method"] == "mcr" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert all({"mcr_jsd/a", "mcr_jsd/b", "mcr_jsd/c"} <= set(t) for t in trace)
    assert any(t["mcr_jsd/a"] > 0 for t in trace)
    capsys.readouterr()
    assert evaluates(run / "best.pt")


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    def cfg(where):
        return tiny_config(where, method={"name": "mcr", "num_samples": 3},
                           model_options={"hidden": 8, "out_dim": 8})

    _, _, a, b = resumed_equals_uninterrupted(cfg, tmp_path, model=generic_model)
    assert torch.equal(torch.as_tensor(a["method"]["generator"]), torch.as_tensor(b["method"]["generator"]))


def test_warm_start_through_the_trainer_loads_the_alone_runs_encoders(tmp_path):
    from ogmge.training.loop import Trainer

    opts = {"hidden": 8, "out_dim": 8}
    deps = {}
    for u in ("a", "b"):
        alone = train(tiny_config(tmp_path / f"only-{u}", method="normal", modulation="Normal", modalities=[u],
                                  epochs=1, model_options=opts), datasets=tiny_bundle(), model=generic_model)
        deps[f"alone/{u}"] = str(alone.run_dir)
    cfg = tiny_config(tmp_path / "mcr", method={"name": "mcr", "num_samples": 2, "warm_start": True},
                      model_options=opts)
    trainer = Trainer(cfg, datasets=tiny_bundle(), model=generic_model, dependencies=deps)
    for u in ("a", "b"):
        best = load_checkpoint_file(tmp_path / f"only-{u}" / "run" / "best.pt")["model"]
        for k, v in trainer.model.encoders[u].state_dict().items():
            assert torch.equal(v, best[f"encoders.{u}.{k}"]), (u, k)
    with pytest.raises(ValueError, match="modality-alone run"):
        Trainer(tiny_config(tmp_path / "mcr2", method={"name": "mcr", "warm_start": True}, model_options=opts),
                datasets=tiny_bundle(), model=generic_model)


@pytest.mark.parametrize("fusion", ["sum", "concat", "film", "gated", "attention"])
def test_any_fusion_head_trains(tmp_path, fusion):
    opts: dict = {"hidden": 8, "out_dim": 8}
    if fusion in ("film", "gated"):
        opts["fusion_options"] = {"condition" if fusion == "film" else "gate": "a"}
    cfg = tiny_config(tmp_path, method={"name": "mcr", "num_samples": 2}, fusion=fusion, epochs=1, model_options=opts)
    result = train(cfg, datasets=tiny_bundle(), model=generic_model)
    trace = load_run(result.run_dir).trace()
    assert trace and all(np.isfinite(t["mcr_jsd/a"]) and np.isfinite(t["mcr_jsd/b"]) for t in trace)
