"""UMT (uni-modal teachers): the pieces, bad options, the teacher phase, teachers from alone runs,
training by name on 3-modality bring-your-own data through the CLI, exact resume in either phase,
and ``ogmge compare --methods normal,umt`` taking its teachers from the modality-alone runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ogmge.interfaces.cli import main
from ogmge.methods import UMT, distillation_terms, registry
from ogmge.methods.registry import BuildContext
from ogmge.training import load_checkpoint_file, load_run, train
from ogmge.training.compare.plan import Plan, run_config
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import (
    generic_model,
    resumed_equals_uninterrupted,
    tiny_bundle,
    tiny_config,
)

MODEL = {"hidden": 8, "out_dim": 8}


# ------------------------------------------------------------------ pieces
def test_distillation_terms_are_the_mean_squared_feature_differences():
    s = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True), "b": torch.tensor([[0.0], [2.0]])}
    t = {"a": torch.tensor([[0.0, 0.0], [3.0, 2.0]], requires_grad=True), "b": torch.tensor([[1.0], [1.0]])}
    d = distillation_terms(s, t)
    assert d["a"].item() == pytest.approx((1 + 4 + 0 + 4) / 4)
    assert d["b"].item() == pytest.approx(1.0)
    d["a"].backward()
    assert t["a"].grad is None  # the teacher's features carry no gradient
    assert torch.allclose(s["a"].grad, 2 * (s["a"] - t["a"]).detach() / 4)


def test_distillation_terms_refuse_mismatched_modalities_and_shapes():
    with pytest.raises(ValueError, match="same modalities"):
        distillation_terms({"a": torch.zeros(2, 3)}, {"b": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="'a'.*\\(2, 3\\).*\\(2, 4\\)"):
        distillation_terms({"a": torch.zeros(2, 3)}, {"a": torch.zeros(2, 4)})


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="umt option lam"):
        UMT.resolve_options({"lam": -1.0})
    with pytest.raises(ValueError, match="umt option teacher_epochs"):
        UMT.resolve_options({"teacher_epochs": 0})
    with pytest.raises(ValueError, match="no option 'alpha'"):
        UMT.resolve_options({"alpha": 1.0})
    assert UMT.resolve_options({}) == {"lam": 10.0, "teacher_epochs": None}


def test_teacher_phase_must_leave_epochs_for_the_student():
    enc = {"a": nn.Linear(2, 3), "b": nn.Linear(2, 3)}
    with pytest.raises(ValueError, match="teacher_epochs 4 leaves no epoch of the run's 4"):
        UMT(enc, teacher_epochs=4, epochs=4)
    assert UMT(enc, epochs=5).phase_end == 2  # default: half the run's epochs
    assert UMT(enc, epochs=1 + 1).phase_end == 1


def test_switch_freezes_teachers_in_eval_mode_and_resets_the_student():
    torch.manual_seed(0)
    enc = {"a": nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)), "b": nn.Linear(2, 3)}
    init = {u: {k: v.clone() for k, v in e.state_dict().items()} for u, e in enc.items()}
    m = UMT(enc, teacher_epochs=1, epochs=3)
    with torch.no_grad():
        for e in enc.values():
            for p in e.parameters():
                p.add_(1.0)
    trained = {u: {k: v.clone() for k, v in e.state_dict().items()} for u, e in enc.items()}
    opt = torch.optim.SGD([p for e in enc.values() for p in e.parameters()], lr=0.1, momentum=0.9)
    opt.state[next(iter(enc["b"].parameters()))]["momentum_buffer"] = torch.ones(3, 2)
    m._switch(opt)
    assert not opt.state
    for u in enc:
        for k, v in enc[u].state_dict().items():
            assert torch.equal(v, init[u][k])
            assert torch.equal(m.teachers[u].state_dict()[k], trained[u][k])
        assert all(not p.requires_grad for p in m.teachers[u].parameters())
    # a teacher in eval mode: dropout off, BN running statistics unchanged by its forward
    m.teachers["a"].train()  # the loop's model.train() never reaches it, but even then:
    x = torch.randn(8, 2)
    before = m.teachers["a"][1].running_mean.clone()
    f1 = m.teacher_features({"a": x, "b": x}, None)["a"]
    f2 = m.teacher_features({"a": x, "b": x}, None)["a"]
    assert torch.equal(f1, f2) and torch.equal(m.teachers["a"][1].running_mean, before)


def _fake_alone_run(where, model, u, shift):
    """An alone run's ``best.pt`` as far as UMT reads it: the model state, encoder ``u`` shifted."""
    where.mkdir(parents=True)
    state = {k: (v + shift if k.startswith(f"encoders.{u}.") and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    torch.save({"model": state}, where / "best.pt")
    return str(where)


def test_teachers_from_alone_runs_and_architecture_mismatch_is_refused(tmp_path):
    bundle = tiny_bundle()
    cfg = tiny_config(tmp_path / "x", method="umt", model_options=MODEL)
    model = generic_model(bundle, cfg)
    deps = {f"alone/{u}": _fake_alone_run(tmp_path / f"only-{u}", model, u, i + 1.0)
            for i, u in enumerate(("a", "b"))}
    ctx = BuildContext(("a", "b"), encoders=dict(model.encoders.items()), dependencies=deps, epochs=2)
    m = UMT.build(ctx)
    assert m.phase_end == 0 and not m.in_teacher_phase
    for i, u in enumerate(("a", "b")):
        for k, v in m.teachers[u].state_dict().items():
            want = model.encoders[u].state_dict()[k]
            assert torch.equal(v, want + (i + 1.0) if v.is_floating_point() else want)
        assert not m.teachers[u].training
    with pytest.raises(ValueError, match="not for \\['b'\\]"):
        UMT.build(ctx.replace(dependencies={"alone/a": deps["alone/a"]}))
    wide = generic_model(bundle, tiny_config(tmp_path / "y", method="umt", model_options={"hidden": 6, "out_dim": 8}))
    with pytest.raises(ValueError, match="teacher for 'a'.*does not match the student's encoder.*shape"):
        UMT.build(ctx.replace(encoders=dict(wide.encoders.items())))
    with pytest.raises(FileNotFoundError, match="modality-alone run"):
        UMT.build(ctx.replace(dependencies={"alone/a": str(tmp_path / "nowhere"), "alone/b": deps["alone/b"]}))


# ------------------------------------------------------------------ through the trainer
def test_cli_trains_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "umt"
    assert train_cli(path, "umt", run, epochs=3) == 0
    assert results(run)["method"] == "umt" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    teacher = [t for t in trace if t["epoch"] == 0]
    student = [t for t in trace if t["epoch"] >= 1]
    assert all(t["umt_teacher_phase"] == 1 and "umt_distill/a" not in t for t in teacher)
    assert all(t["umt_teacher_phase"] == 0 and {"umt_distill/a", "umt_distill/b", "umt_distill/c"} <= set(t)
               for t in student)
    ck = load_checkpoint_file(run / "last.pt")
    assert set(ck["method"]["teachers"]) == {"a", "b", "c"} and ck["method"]["initial"] is None
    capsys.readouterr()
    assert evaluates(run / "best.pt")


@pytest.mark.parametrize("stop", [0, 1, 2], ids=["in-teacher-phase", "at-the-switch", "in-student-phase"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, stop):
    def cfg(where):
        return tiny_config(where, method={"name": "umt", "teacher_epochs": 2}, epochs=4, model_options=MODEL)

    _, _, a, b = resumed_equals_uninterrupted(cfg, tmp_path, stop=stop, model=generic_model)
    for u, state in a["method"]["teachers"].items():
        for k, v in state.items():
            assert torch.equal(v, b["method"]["teachers"][u][k])


def test_main_phase_loss_is_fused_ce_plus_lam_times_feature_mse(tmp_path):
    """One step of the student phase through the trainer equals CE + lam * sum_u MSE from the same weights."""
    cfg = tiny_config(tmp_path / "r", method={"name": "umt", "lam": 3.0, "teacher_epochs": 1}, epochs=2,
                      model_options=MODEL)
    seen = {}

    def grab(event, info):
        if event == "epoch_end" and info["epoch"] == 1:
            seen["trainer"] = info["trainer"]

    train(cfg, datasets=tiny_bundle(), model=generic_model, callbacks=[grab])
    tr = seen["trainer"]
    m = tr.method
    batch = next(iter(tr.train_loader))
    tr.model.train()
    out = tr.model(batch["inputs"], labels=batch["labels"])
    want = nn.functional.cross_entropy(out.logits, batch["labels"])
    for u in ("a", "b"):
        with torch.no_grad():
            t = m.teachers[u](batch["inputs"][u])
        want = want + 3.0 * ((out.features[u] - t) ** 2).mean()
    total, _ = m.loss(out.logits, batch["labels"], head_logits=out.head_logits)
    got = total + 3.0 * sum(distillation_terms(dict(out.features), m.teacher_features(batch["inputs"], None)).values())
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


# ------------------------------------------------------------------ compare
def test_compare_plans_umt_after_the_alone_runs_with_their_directories(tmp_path):
    from ogmge.training.config import TrainConfig

    plan = Plan.build(tmp_path, TrainConfig(), ["normal", "umt"], [0], ["a", "b"])
    umt = next(r for r in plan.runs if r.method == "umt")
    assert set(umt.needs) == {"only-a/seed-0", "only-b/seed-0"}
    cfg = run_config(plan.base, umt, tmp_path)
    assert cfg.dependencies == {"alone/a": str(tmp_path / "only-a/seed-0"), "alone/b": str(tmp_path / "only-b/seed-0")}
    normal = next(r for r in plan.runs if r.method == "normal" and r.modality is None)
    assert normal.needs == () and run_config(plan.base, normal, tmp_path).dependencies == {}
    assert registry.get("umt").depends_on == ("alone",)


def test_compare_normal_umt_takes_the_teachers_from_the_alone_runs(tmp_path, capsys):
    path = three_modality_npz(tmp_path, n=45)
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(path), "--methods", "normal,umt", "--seeds", "0", "--epochs", "2",
                 "--batch-size", "8", "--device", "cpu", "--set", "model_options={hidden: 4, out_dim: 8}",
                 "--no-progress", "--no-plot", "--jobs", "1", "--out", str(out)]) == 0
    ck = load_checkpoint_file(out / "umt/seed-0/last.pt")
    assert ck["config"]["dependencies"] == {f"alone/{u}": str(out / f"only-{u}/seed-0") for u in "abc"}
    assert ck["method"]["initial"] is None  # no teacher phase: both epochs trained the student
    for u in "abc":
        alone = load_checkpoint_file(out / f"only-{u}/seed-0/best.pt")["model"]
        for k, v in ck["method"]["teachers"][u].items():
            assert torch.equal(v, alone[f"encoders.{u}.{k}"])
    trace = load_run(out / "umt/seed-0").trace()
    assert all(t["umt_teacher_phase"] == 0 and "umt_distill/c" in t for t in trace)


def test_dependencies_config_is_checked_and_reaches_the_build_context(tmp_path):
    from ogmge.training.config import InvalidType, TrainConfig
    from ogmge.training.factory import build_context

    with pytest.raises(InvalidType, match="dependencies must map names to run directories"):
        TrainConfig(dependencies=["only-a"])
    cfg = tiny_config(tmp_path, method="umt", dependencies={"alone/a": "/x"}, model_options=MODEL)
    model = generic_model(tiny_bundle(), cfg)
    assert build_context(cfg, model).dependencies == {"alone/a": "/x"}
    assert build_context(cfg, model, dependencies={}).dependencies == {}


def test_ddp_is_refused_with_the_reason():
    assert UMT.ddp == "refused" and "without a gradient" in UMT.ddp_reason


@pytest.mark.parametrize("fusion", ["sum", "attention"])
def test_trains_with_other_fusion_heads_on_three_modalities(tmp_path, fusion):
    path = three_modality_npz(tmp_path, n=30)
    run = tmp_path / fusion
    assert train_cli(path, "umt", run, "--fusion", fusion, epochs=2, lr=None) == 0
    trace = load_run(run).trace()
    assert any("umt_distill/c" in t for t in trace)


def test_a_concat_alone_run_teaches_a_gated_student(tmp_path):
    """compare trains the alone runs of a two-modality fusion with a concat head: same encoders."""
    bundle = tiny_bundle()
    alone = generic_model(bundle, tiny_config(tmp_path / "c", method="normal", model_options=MODEL))
    gated_cfg = tiny_config(tmp_path / "g", method="umt", fusion="gated",
                            model_options={**MODEL, "fusion_options": {"gate": "a"}})
    student = generic_model(bundle, gated_cfg)
    deps = {f"alone/{u}": _fake_alone_run(tmp_path / f"only-{u}", alone, u, 0.5) for u in ("a", "b")}
    m = UMT.build(BuildContext(("a", "b"), encoders=dict(student.encoders.items()), dependencies=deps, epochs=2))
    assert set(m.teachers) == {"a", "b"}
