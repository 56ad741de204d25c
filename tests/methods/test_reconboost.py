"""ReconBoost: the stage plan, the loss pieces, the boosted-sum head, the phases' gradients,
warm starts, and training by name on three bring-your-own modalities (CLI), exact resume, eval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ogmge import methods
from ogmge.methods.reconboost import (
    BOOST,
    RECTIFY,
    BoostedSum,
    ReconBoost,
    boosting_loss,
    consolidation_loss,
    stage_plan,
)
from ogmge.training import Trainer, load_checkpoint, load_checkpoint_file, load_run, predict, train
from ogmge.training.metrics import to_device
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import (
    Stop,
    resumed_equals_uninterrupted,
    stop_after,
    tiny_bundle,
    tiny_config,
)


# ---------------------------------------------------------------- the stage plan
def _stages(plan):
    """[(modality, boost epochs, rectify epochs)] per stage."""
    out: dict[int, list] = {}
    for s, m, phase in plan:
        row = out.setdefault(s, [m, 0, 0])
        row[1 if phase == BOOST else 2] += 1
    return [tuple(out[s]) for s in sorted(out)]


def test_a_twelve_epoch_budget_scales_the_authors_stages():
    # two modalities: the authors' 4 + 4 per stage is 16 epochs a round; 12 epochs give 3 + 3
    assert _stages(stage_plan(12, ["a", "v"])) == [("a", 3, 3), ("v", 3, 3)]
    # three modalities: 2 + 2 each
    assert _stages(stage_plan(12, ["a", "v", "t"])) == [("a", 2, 2), ("v", 2, 2), ("t", 2, 2)]


def test_a_long_budget_keeps_the_authors_stage_length_round_robin():
    st = _stages(stage_plan(100, ["a", "v"]))
    assert len(st) == 12  # 100 // 8
    assert st[:4] == [("a", 5, 4), ("v", 5, 4), ("a", 5, 4), ("v", 5, 4)]  # 100 = 12 * 8 + 4: four stages of 9
    assert all(s[1:] == (4, 4) for s in st[4:])
    assert [s[0] for s in st] == ["a", "v"] * 6


def test_short_budgets_boost_only_and_cover_the_first_modalities():
    assert _stages(stage_plan(2, ["a", "b"])) == [("a", 1, 0), ("b", 1, 0)]
    assert _stages(stage_plan(1, ["a", "b", "c"])) == [("a", 1, 0)]
    assert _stages(stage_plan(7, ["a", "b", "c"])) == [("a", 2, 1), ("b", 1, 1), ("c", 1, 1)]
    assert _stages(stage_plan(6, ["a", "b"], 3, 1)) == [("a", 2, 1), ("b", 2, 1)]
    assert _stages(stage_plan(4, ["a", "b"], 2, 0)) == [("a", 2, 0), ("b", 2, 0)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_the_plan_always_spends_the_whole_budget(n):
    names = [f"m{i}" for i in range(n)]
    for epochs in range(1, 60):
        for b, r in ((4, 4), (1, 3), (3, 0), (2, 5)):
            plan = stage_plan(epochs, names, b, r)
            assert len(plan) == epochs
            for s, m, _ in plan:
                assert m == names[s % n]
            stages = _stages(plan)
            assert all(boost >= 1 for _, boost, _ in stages)
            if epochs >= n:
                assert {m for m, _, _ in stages} == set(names)


def test_bad_plan_arguments_are_named():
    with pytest.raises(ValueError, match="rectify_epochs"):
        stage_plan(4, ["a", "b"], 4, -1)
    with pytest.raises(ValueError, match="boost_epochs"):
        stage_plan(4, ["a", "b"], 0, 4)
    with pytest.raises(ValueError, match="epochs"):
        stage_plan(0, ["a", "b"])


# ---------------------------------------------------------------- the loss pieces
def test_boosting_loss_against_a_hand_computation():
    torch.manual_seed(0)
    o = torch.randn(4, 3, dtype=torch.float64)
    f = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    p = torch.softmax(o, 1)
    q = torch.softmax(f, 1)
    want = 0.0
    for i in range(4):
        for c in range(3):
            yi = 1.0 if c == int(y[i]) else 0.0
            want += -5.0 * yi * math.log(p[i, c]) + 1.0 * yi * q[i, c].item() * math.log(p[i, c])
    want /= 12
    assert boosting_loss(o, f, y, w1=5.0, w2=1.0).item() == pytest.approx(want, rel=1e-12)
    # an empty ensemble: q = 1 (the released constant softmaxed over one column): weight w1 - w2
    empty = sum(-(5.0 - 1.0) * math.log(p[i, int(y[i])]) for i in range(4)) / 12
    assert boosting_loss(o, None, y, w1=5.0, w2=1.0).item() == pytest.approx(empty, rel=1e-12)


def test_consolidation_loss_keeps_its_gradient_unless_as_released():
    o = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    prev = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    want = ((torch.softmax(o, 1) - torch.softmax(prev, 1)) ** 2).mean()
    live = consolidation_loss(o, prev)
    assert live.item() == pytest.approx(want.item(), rel=1e-12)
    live.backward()
    assert o.grad is not None and o.grad.abs().sum() > 0
    assert prev.grad is None  # the previous learner is not trained here
    dead = consolidation_loss(o, prev, detach=True)
    assert dead.item() == pytest.approx(want.item(), rel=1e-12) and not dead.requires_grad


# ---------------------------------------------------------------- the boosted sum
def test_boosted_sum_sums_the_members_times_the_boost_rate():
    torch.manual_seed(0)
    head = BoostedSum({"a": 3, "b": 2, "c": 4}, 5, boost_rate=0.7)
    x = {"a": torch.randn(6, 3), "b": torch.randn(6, 2), "c": torch.randn(6, 4)}
    parts = {n: head.heads[n](x[n]) for n in "abc"}
    assert torch.allclose(head(x), 0.7 * (parts["a"] + parts["b"] + parts["c"]))
    head.set_members(["c", "a"])
    assert head.members == ("a", "c")
    assert torch.allclose(head(x), 0.7 * (parts["a"] + parts["c"]))
    head.set_members([])
    assert torch.equal(head(x), torch.zeros(6, 5))
    state = head.state_dict()
    other = BoostedSum({"a": 3, "b": 2, "c": 4}, 5)
    other.load_state_dict(state)
    assert other.members == () and other.boost_rate.item() == pytest.approx(0.7)


def test_shared_head_is_one_module_and_needs_equal_sizes():
    head = BoostedSum({"a": 4, "b": 4}, 3, head="shared")
    assert head.heads["a"] is head.heads["b"]
    assert sum(p.numel() for p in head.parameters()) == (4 * 256 + 256) + (256 * 3 + 3) + 1
    with pytest.raises(ValueError, match="equal feature sizes"):
        BoostedSum({"a": 4, "b": 3}, 3, head="shared")


def test_bad_options_are_named():
    cls = methods.get("reconboost")
    for bad in ({"w1": 0.0}, {"w2": -1.0}, {"alpha": -0.1}, {"boost_rate": 0.0}, {"boost_epochs": 0},
                {"rectify_epochs": -1}, {"head": "mlp"}, {"as_released": "yes"}):
        (key, value), = bad.items()
        with pytest.raises(ValueError, match=f"option {key}"):
            cls.resolve_options(bad)


def test_w2_above_w1_is_refused_naming_both():
    with pytest.raises(ValueError, match="w1=2.0, w2=3.0"):
        ReconBoost(BoostedSum({"a": 2, "b": 2}, 3), epochs=4, w1=2.0, w2=3.0)


def test_declarations():
    cls = methods.get("reconboost")
    assert cls is ReconBoost and cls.min_modalities == 2 and cls.max_modalities is None
    assert cls.ddp == "refused" and "find_unused_parameters" in cls.ddp_reason
    assert cls.depends_on == ("alone",) and cls.predictions == ("fused",)


# ---------------------------------------------------------------- phases through the trainer
def _grads_after_one_step(tmp_path, epoch, epochs=6, **opts):
    cfg = tiny_config(tmp_path, method={"name": "reconboost", **opts}, epochs=epochs,
                      model_options={"builder": "generic", "hidden": 8, "out_dim": 8})
    trainer = Trainer(cfg, datasets=tiny_bundle())
    for e in range(epoch + 1):
        trainer._begin_epoch(e)
    trainer.net.train()
    batch = next(iter(trainer.train_loader))
    b = to_device(batch, trainer.device)
    trainer.optimizer.zero_grad(set_to_none=True)
    out = trainer._forward(b)
    _, total, _ = trainer._loss(out, b["labels"])
    total.backward()
    return trainer, {n: p.grad for n, p in trainer.model.named_parameters()}


def test_boosting_trains_only_the_learner_and_rectification_every_member(tmp_path):
    # 6 epochs, two modalities: stage a = epochs 0-1 boost, 2 rectify; stage b = 3-4 boost, 5 rectify
    trainer, grads = _grads_after_one_step(tmp_path / "b", 3)
    assert trainer.method.phase(3) == (1, "b", BOOST)
    touched = {n for n, g in grads.items() if g is not None}
    assert any(n.startswith("encoders.b.") for n in touched) and "fusion.heads.b.weight" in touched
    assert not any(n.startswith(("encoders.a.", "fusion.heads.a.")) for n in touched)
    assert "fusion.boost_rate" not in touched
    trainer, grads = _grads_after_one_step(tmp_path / "r", 2)
    assert trainer.method.phase(2) == (0, "a", RECTIFY)
    assert trainer.model.fusion.members == ("a",)  # b has not started yet
    touched = {n for n, g in grads.items() if g is not None}
    assert {"fusion.boost_rate", "fusion.heads.a.weight"} <= touched
    assert any(n.startswith("encoders.a.") for n in touched)
    assert not any(n.startswith(("encoders.b.", "fusion.heads.b.")) for n in touched)
    trainer, grads = _grads_after_one_step(tmp_path / "r2", 5)
    touched = {n for n, g in grads.items() if g is not None}
    assert {"fusion.heads.a.weight", "fusion.heads.b.weight", "fusion.boost_rate"} <= touched


def test_the_optimizer_state_is_fresh_at_each_phase(tmp_path):
    cfg = tiny_config(tmp_path, method={"name": "reconboost"}, epochs=6, optimizer="sgd", momentum=0.9,
                      model_options={"builder": "generic", "hidden": 8, "out_dim": 8})
    trainer = Trainer(cfg, datasets=tiny_bundle())
    seen = []
    original = trainer.method.before_step

    def spy(optimizer):
        seen.append((trainer.method.epoch, len(optimizer.state), trainer.method._reset_pending))
        original(optimizer)

    trainer.method.before_step = spy
    for e in range(4):
        trainer._begin_epoch(e)
        trainer._train_epoch(e, _NoLog())
    firsts = {}
    for epoch, _, pending in seen:
        firsts.setdefault(epoch, pending)
    assert firsts == {0: True, 1: False, 2: True, 3: True}  # phases start at epochs 0, 2, 3


class _NoLog:
    enabled = False

    def step(self, row):
        pass

    def flush_steps(self):
        return []


# ---------------------------------------------------------------- warm starts
def test_warm_start_loads_the_alone_runs_encoders_and_refuses_without_them(tmp_path):
    bundle = tiny_bundle()
    opts = {"builder": "generic", "hidden": 8, "out_dim": 8}
    donor = train(tiny_config(tmp_path / "donor", method="normal", epochs=1, model_options=opts), datasets=bundle)
    deps = {"alone/a": str(donor.run_dir), "alone/b": str(donor.run_dir)}
    cfg = tiny_config(tmp_path / "warm", method={"name": "reconboost", "warm_start": True}, epochs=4,
                      model_options=opts)
    trainer = Trainer(cfg, datasets=bundle, dependencies=deps)
    best = load_checkpoint_file(donor.run_dir / "best.pt")["model"]
    for k, v in trainer.model.state_dict().items():
        if k.startswith("encoders."):
            assert torch.equal(v, best[k]), k
    assert trainer.method.members_at(0) == ("a", "b")  # every learner is in the ensemble from the start
    with pytest.raises(ValueError, match="alone/a"):
        Trainer(tiny_config(tmp_path / "cold", method={"name": "reconboost", "warm_start": True}, epochs=4,
                            model_options=opts), datasets=bundle)
    # a resumed warm-started run needs no dependencies: its weights are in its checkpoint
    cut = tiny_config(tmp_path / "cut", method={"name": "reconboost", "warm_start": True}, epochs=4,
                      model_options=opts)
    with pytest.raises(Stop):
        train(cut, datasets=bundle, dependencies=deps, callbacks=[stop_after(0)])
    assert train(cut, resume=True, datasets=bundle).start_epoch == 1


# ---------------------------------------------------------------- by name, resume, eval
def test_cli_trains_on_three_byo_modalities_and_evaluates_the_boosted_sum(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "run"
    assert train_cli(path, "reconboost", run, epochs=6) == 0
    assert results(run)["method"] == "reconboost" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert [int(t["reconboost/learner"]) for t in trace if t["reconboost/rectifying"] == 0][0] == 0
    assert {int(t["reconboost/learner"]) for t in trace} == {0, 1, 2}
    assert any(t["reconboost/consolidation"] > 0 for t in trace)
    assert any(abs(t["reconboost/boost_rate"] - 1.0) > 1e-6 for t in trace)  # beta is learnt
    capsys.readouterr()
    assert evaluates(run / "best.pt")
    # the prediction is the boosted sum of the members' learners
    model = load_checkpoint(run / "best.pt").model
    model.eval()
    assert model.fusion.members == ("a", "b", "c")
    data = np.load(path)
    x = {k: torch.as_tensor(data[k][:7], dtype=torch.float32) for k in "abc"}
    with torch.no_grad():
        feats = model.encode(x)
        want = model.fusion.boost_rate * sum(model.fusion.heads[n](feats[n]) for n in "abc")
    got = predict(model, x)
    assert torch.allclose(got["probs"], torch.softmax(want, 1), atol=1e-6)


def test_interrupted_mid_phase_and_resumed_equals_uninterrupted(tmp_path):
    def cfg(where):
        return tiny_config(where, method={"name": "reconboost", "alpha": 0.7}, epochs=6,
                           model_options={"builder": "generic", "hidden": 8, "out_dim": 8})

    # interrupted after epoch 0: inside stage 0's boosting phase
    full, resumed, a, b = resumed_equals_uninterrupted(cfg, tmp_path, stop=0)
    assert a["method"] == b["method"]
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


def test_resume_with_another_plan_is_refused():
    fusion = BoostedSum({"a": 2, "b": 2}, 3)
    state = ReconBoost(fusion, epochs=6).state_dict()
    with pytest.raises(ValueError, match="stage plan"):
        ReconBoost(fusion, epochs=8).load_state_dict(state)


def test_a_model_without_the_boosted_sum_is_refused(tmp_path):
    from ogmge.methods.registry import BuildContext
    with pytest.raises(ValueError, match="boosted sum"):
        ReconBoost.build(BuildContext(("a", "b"), {"a": 2, "b": 2}, 3, fusion=torch.nn.Linear(2, 2), epochs=4))
    with pytest.raises(ValueError, match="ctx.epochs"):
        ReconBoost.build(BuildContext(("a", "b"), {"a": 2, "b": 2}, 3, fusion=BoostedSum({"a": 2, "b": 2}, 3)))


def test_a_plain_loop_must_call_begin_epoch():
    fusion = BoostedSum({"a": 2, "b": 2}, 3)
    method = ReconBoost(fusion, epochs=4)
    feats = {"a": torch.randn(5, 2), "b": torch.randn(5, 2)}
    y = torch.tensor([0, 1, 2, 0, 1])
    with pytest.raises(RuntimeError, match="begin_epoch"):
        method.loss(fusion(feats), y, features=feats)
    method.begin_epoch(0, train_size=5)
    total, terms = method.loss(fusion(feats), y, features=feats)
    assert set(terms) == {"fused", "boost"} and total.requires_grad


def test_warm_start_loading_names_a_mismatched_or_missing_encoder(tmp_path):
    from ogmge.training.checkpoint import load_alone_encoders_
    bundle = tiny_bundle()
    small = train(tiny_config(tmp_path / "small", method="normal", epochs=1,
                              model_options={"builder": "generic", "hidden": 8, "out_dim": 8}), datasets=bundle)
    cfg = tiny_config(tmp_path / "big", method="normal", epochs=1,
                      model_options={"builder": "generic", "hidden": 16, "out_dim": 8}, out=None)
    model = Trainer(cfg, datasets=bundle).model
    with pytest.raises(ValueError, match="encoder 'a' does not match"):
        load_alone_encoders_(model, {"alone/a": str(small.run_dir), "alone/b": str(small.run_dir)})
    with pytest.raises(ValueError, match="alone/b"):
        load_alone_encoders_(model, {"alone/a": str(small.run_dir)})


def test_the_released_configuration_trains_shared_head_and_detached_consolidation(tmp_path):
    cfg = tiny_config(tmp_path, method={"name": "reconboost", "head": "shared", "as_released": True}, epochs=4,
                      model_options={"builder": "generic", "hidden": 8, "out_dim": 8})
    result = train(cfg, datasets=tiny_bundle())
    model = load_checkpoint(result.run_dir / "last.pt").model
    assert model.fusion.heads["a"] is model.fusion.heads["b"] and model.fusion.head == "shared"
    assert math.isfinite(result.test_metrics["acc"])
