"""Silent failures: each case produced a wrong result or lost data with exit 0."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

import support.reliability_helpers as helpers
from ogmge import OGMGE, discrepancy_ratios
from ogmge.training import TrainConfig, load_checkpoint_file, load_run, train
from support.reliability_helpers import cli


def tiny_npz(path, **kw):  # 36 samples: 3 training steps of 12 per epoch (step arithmetic below)
    return helpers.tiny_npz(path, **{"n": 36, **kw})


def tiny_values(data, out, **changes):
    return helpers.tiny_values(data, out, **{"batch_size": 12, "lr": 0.05, **changes})


# 1 ----------------------------------------------------------------------------------------------
def test_single_class_labels_are_refused(tmp_path, capsys):
    data = tiny_npz(tmp_path / "one.npz", labels=np.zeros(36, dtype=np.int64))
    assert cli("train", "--data", data, "--epochs", "1", "--device", "cpu", "--no-progress",
               "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "single class" in err and "at least two classes" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory is created


# 2 ----------------------------------------------------------------------------------------------
def test_values_finite_in_float64_but_not_float32_are_refused(tmp_path, capsys):
    path = tmp_path / "big.npz"
    x = np.random.default_rng(0).normal(size=(36, 4))
    x[5, 2] = 1e300  # finite as float64, inf as the float32 the model sees
    np.savez(path, labels=np.arange(36) % 3, a=x, b=x.copy())
    assert cli("train", "--data", path, "--epochs", "1", "--device", "cpu", "--no-progress",
               "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "array 'a'" in err and "float32" in err and "sample 5" in err


class PoisonedModel(nn.Module):
    """Two linear encoders and a concat head; the loss becomes NaN on the chosen global steps."""

    def __init__(self, bad_steps) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({n: nn.Linear(4, 8) for n in ("a", "b")})
        self.head = nn.Linear(16, 3)
        self.bad_steps = set(bad_steps)
        self.calls = 0

    def forward(self, inputs, lengths=None, labels=None):
        from types import SimpleNamespace

        feats = {n: torch.relu(e(inputs[n])) for n, e in self.encoders.items()}
        logits = self.head(torch.cat([feats["a"], feats["b"]], dim=1))
        if self.training:
            if getattr(self, "on_call", None) is not None:
                self.on_call(self.calls)
            if self.calls in self.bad_steps:
                logits = logits * float("nan")
            self.calls += 1
        parts = self.head.weight.split(8, dim=1)
        mod = {n: (feats[n] @ w.T + self.head.bias / 2).detach() for n, w in zip(("a", "b"), parts)}
        return SimpleNamespace(logits=logits, modality_logits=mod, features=feats, sample_keep=None)


@pytest.mark.parametrize("optimizer, scaler", [("sgd", False), ("adam", False), ("sgd", True)],
                         ids=["sgd", "adam", "sgd-gradscaler"])
def test_nonfinite_step_never_reaches_weights_or_optimizer_state(tmp_path, optimizer, scaler):
    """Step 4 has a NaN loss: it is skipped, counted and traced, and the weights and the
    optimizer's state (momentum / Adam moments) after it are exactly those before it --
    without AMP, and through the GradScaler path (a CPU GradScaler stands in for CUDA AMP)."""
    from ogmge.training import Trainer

    data = tiny_npz(tmp_path / "d.npz")
    values = tiny_values(data, tmp_path / "run", epochs=2, optimizer=optimizer, val_fraction=0.0)
    model = PoisonedModel(bad_steps={4})
    trainer = Trainer(TrainConfig.from_dict(values), model=model)
    if scaler:
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    seen = {}

    def record(call):
        if call in (4, 5):
            state = trainer.optimizer.state_dict()["state"]
            seen[call] = ({k: v.clone() for k, v in model.state_dict().items()},
                          {i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for i, s in state.items()})

    model.on_call = record
    r = trainer.fit()
    (w4, o4), (w5, o5) = seen[4], seen[5]
    assert all(torch.equal(w4[k], w5[k]) for k in w4)
    assert o4.keys() == o5.keys() and all(torch.equal(o4[i][k], o5[i][k]) for i in o4 for k in o4[i])
    assert all(torch.isfinite(v).all() for v in load_checkpoint_file(r.run_dir / "last.pt")["model"].values())
    assert [row["train/skipped_steps"] for row in r.history] == [0, 1]
    trace = load_run(r.run_dir).trace()
    skipped = [t for t in trace if t["step"] == 4][0]
    assert skipped["modulated"] is False and skipped["skip_reason"] == "non-finite loss"
    assert all(t["skip_reason"] is None for t in trace if t["step"] != 4)


def test_persistent_nonfinite_stops_with_the_step_and_tensor_named(tmp_path, monkeypatch):
    from ogmge.training import loop

    data = tiny_npz(tmp_path / "d.npz")
    monkeypatch.setattr(loop, "MAX_CONSECUTIVE_SKIPS", 4)
    values = tiny_values(data, tmp_path / "run", epochs=3, val_fraction=0.0)
    model = PoisonedModel(bad_steps=range(3, 100))  # from epoch 1 (3 steps per epoch) on
    with pytest.raises(ValueError, match=r"stopped at step 6 \(epoch 2\): 4 consecutive steps .*tensor of the last one: the loss.*"
                                         r"last checkpoint, .*last\.pt, is intact"):
        train(TrainConfig.from_dict(values), model=lambda b, c: model)
    ck = load_checkpoint_file(tmp_path / "run" / "last.pt")
    assert ck["epoch"] == 1  # epoch 1's steps were all skipped: its weights are epoch 0's
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


# 3 ----------------------------------------------------------------------------------------------
def test_split_column_without_train_rows_is_refused(tmp_path, capsys):
    data = tiny_npz(tmp_path / "s.npz", split=["val"] * 6 + ["test"] * 30)
    assert cli("train", "--data", data, "--epochs", "1", "--device", "cpu", "--no-progress",
               "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "'split' column has no 'train' rows" in err and "'val': 6" in err and "'test': 30" in err


def test_split_column_without_test_rows_is_said_at_start(tmp_path, caplog):
    data = tiny_npz(tmp_path / "s.npz", split=["train"] * 30 + ["val"] * 6)
    with caplog.at_level(logging.WARNING, logger="ogmge.training"):
        r = train(TrainConfig.from_dict(tiny_values(data, tmp_path / "run", epochs=1)))
    assert "no 'test' rows" in caplog.text and "no test evaluation" in caplog.text
    assert r.test_metrics is None


# 4 ----------------------------------------------------------------------------------------------
def test_out_with_user_files_is_refused_and_left_alone(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own settings\n")
    (mine / "notes.txt").write_text("keep me\n")
    assert cli("train", "--data", data, "--epochs", "1", "--device", "cpu", "--no-progress", "--out", mine) == 2
    assert "not an ogmge run directory" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "notes.txt"]
    assert (mine / "config.yaml").read_text() == "my own settings\n"
    # --overwrite never deletes a directory that is not a run
    assert cli("train", "--data", data, "--epochs", "1", "--device", "cpu", "--no-progress", "--out", mine,
               "--overwrite") == 2
    assert (mine / "notes.txt").read_text() == "keep me\n"


# 5 ----------------------------------------------------------------------------------------------
def test_directory_of_a_failed_run_is_refused_then_overwrite_starts_over(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    values = tiny_values(data, tmp_path / "run", epochs=1)

    with pytest.raises(KeyboardInterrupt):  # dies before its first checkpoint is written
        _fail_before_checkpoint(values)
    assert (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "last.pt").exists()
    common = ("--data", data, "--epochs", "1", "--device", "cpu", "--no-progress", "--out", tmp_path / "run",
              "--set", "model_options={hidden: 4, out_dim: 8}")
    assert cli("train", *common) == 2
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint" in err and "--overwrite" in err
    assert cli("train", *common, "--overwrite") == 0
    steps = [t["step"] for t in load_run(tmp_path / "run").trace()]
    assert steps == sorted(set(steps)) and steps[0] == 0


def _fail_before_checkpoint(values):
    from ogmge.training import checkpoint

    real = checkpoint.torch.save

    def boom(*a, **k):
        raise KeyboardInterrupt

    checkpoint.torch.save = boom
    try:
        train(TrainConfig.from_dict(values))
    finally:
        checkpoint.torch.save = real


# 6 ----------------------------------------------------------------------------------------------
def test_resume_or_eval_on_other_data_is_refused_naming_both(tmp_path, capsys):
    first = tiny_npz(tmp_path / "first.npz", seed=0)
    other = tiny_npz(tmp_path / "other.npz", seed=1)  # same shapes, other content
    run = tmp_path / "run"
    assert cli("train", "--data", first, "--epochs", "1", "--device", "cpu", "--no-progress", "--out", run,
               "--set", "model_options={hidden: 4, out_dim: 8}") == 0
    capsys.readouterr()
    assert cli("train", "--resume", run, "--epochs", "2", "--data", other) == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(other) in err and "--allow-data-change" in err
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 0
    assert cli("eval", "--checkpoint", run, "--data", other) == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(other) in err and "--allow-data-change" in err
    assert cli("eval", "--checkpoint", run, "--data", other, "--allow-data-change") == 0
    assert cli("train", "--resume", run, "--epochs", "2", "--data", other, "--allow-data-change") == 0
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 1


# 8 ----------------------------------------------------------------------------------------------
def test_step_with_nan_logits_is_a_noop_decided_on_device():
    torch.manual_seed(0)
    enc = {n: nn.Linear(3, 3) for n in ("a", "b")}
    for m in enc.values():
        for p in m.parameters():
            p.grad = torch.randn_like(p)
    before = {n: m.weight.grad.clone() for n, m in enc.items()}
    mod = OGMGE(enc, mode="OGM_GE", alpha=0.8, select="weights")
    logits = {"a": torch.full((4, 3), float("nan")), "b": torch.randn(4, 3)}
    stats = mod.step(modality_logits=logits, labels=torch.tensor([0, 1, 2, 0]), epoch=0)
    assert stats.ran and isinstance(stats.finite, torch.Tensor)  # the decision is a device tensor
    assert stats.modulated is False and stats.skip_reason == "non-finite scores"
    for n, m in enc.items():
        assert torch.equal(m.weight.grad, before[n])  # neither scaled nor noised


# 10 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_equal_scores_give_ratio_one_exactly(n):
    g = torch.Generator().manual_seed(n)
    for value in torch.rand(2000, generator=g) * 64:
        scores = {f"m{i}": value.clone() for i in range(n)}
        ratios = discrepancy_ratios(scores)
        assert all(r.item() == 1.0 for r in ratios.values()), value.item()
    mod = OGMGE({f"m{i}": nn.Linear(2, 2) for i in range(n)}, mode="OGM", alpha=0.8, select="weights")
    _, coeffs = mod.coefficients_from_scores({f"m{i}": torch.tensor(12.345678) for i in range(n)})
    assert all(k.item() == 1.0 for k in coeffs.values())


def test_a_gradient_whose_square_overflows_is_skipped_not_fed_to_adam(tmp_path, monkeypatch):
    """MMPareto's scale at 1e30: every gradient is finite, but Adam's g**2 overflows to inf and
    the encoders silently stop learning. Such a step is skipped like a non-finite one, and a run
    of them stops naming the parameter and the cause; no inf reaches the optimizer state."""
    from ogmge.training import loop

    assert loop.overflow_limit(torch.float32) == pytest.approx(1.8446743e19, rel=1e-6)
    data = tiny_npz(tmp_path / "d.npz")
    monkeypatch.setattr(loop, "MAX_CONSECUTIVE_SKIPS", 4)
    values = tiny_values(data, tmp_path / "run", epochs=3, val_fraction=0.0, modulation="Normal", optimizer="adam",
                         method={"name": "mmpareto", "scale": 1e30}, lr=1e-3)
    with pytest.raises(ValueError, match=r"consecutive steps .*gradient of encoders\..* overflows torch\.float32"):
        train(TrainConfig.from_dict(values))
    ck = load_checkpoint_file(tmp_path / "run" / "last.pt") if (tmp_path / "run" / "last.pt").exists() else None
    if ck is not None:
        for state in ck["optimizer"]["state"].values():
            assert all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t) and t.is_floating_point())
