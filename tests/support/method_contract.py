"""The contract every registered balancing method honours (as optax's and TorchJD's shared
suites do): run by tests/methods/test_method_contract.py over ``ogmge.methods.names()``, and
by any test that adds a method (the one-file plug-in test)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ogmge import methods
from ogmge.training import Trainer, evaluate_checkpoint, load_checkpoint, load_run, predict, train
from ogmge.training.checkpoint import load_checkpoint_file
from ogmge.training.factory import build_context, build_model_from_config
from support.training_standins import (
    Stop,
    TinyDataset,
    metric_rows,
    stop_after,
    tiny_bundle,
    tiny_config,
)

#: Wrong-typed values for an option of each type (each must be refused naming option and value).
BAD = {float: "not-a-number", int: 2.5, bool: "yes", str: 12345}


def contract_config(tmp_path: Path, name: str, **changes):
    values = dict(method={"name": name}, epochs=2, model_options={"builder": "generic", "hidden": 8, "out_dim": 8},
                  out=str(tmp_path / "run"))
    values.update(changes)
    return tiny_config(tmp_path, **values)


def check_builds_from_defaults(name: str, tmp_path: Path) -> None:
    """``cls.build(ctx)`` with no options gives a method of that class, named ``name``, whose
    state is plain data (a checkpoint loads it with ``weights_only=True``)."""
    cls = methods.get(name)
    cfg = contract_config(tmp_path, name)
    bundle = tiny_bundle()
    model, _ = build_model_from_config(cfg, bundle.modalities, bundle.num_classes)
    method = cls.build(build_context(cfg, model))
    assert isinstance(method, methods.BalancingMethod) and method.name == name
    path = tmp_path / "state.pt"
    torch.save(method.state_dict(), path)
    torch.load(path, weights_only=True)


def check_bad_options_are_refused(name: str) -> None:
    """Every option refuses a wrong-typed value with an error naming the option and the value."""
    cls = methods.get(name)
    for opt in cls.options:
        bad = BAD[opt.type]
        try:
            cls.resolve_options({opt.name: bad})
        except ValueError as exc:
            assert f"option {opt.name}" in str(exc) and repr(bad) in str(exc), exc
        else:
            raise AssertionError(f"{name}: option {opt.name} accepted {bad!r}")


def check_one_step_changes_parameters(name: str, tmp_path: Path) -> None:
    """One training step of the trainer moves some parameter and leaves every one finite."""
    trainer = Trainer(contract_config(tmp_path, name, out=None), datasets=tiny_bundle())
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer._begin_epoch(0)  # the per-epoch hooks run before an epoch's steps, as in fit()
    trainer._start_epoch_method(0)
    batch = next(iter(trainer.train_loader))
    trainer.net.train()
    step = trainer._train_step(batch, 0)
    assert step.skip_reason is None and math.isfinite(float(step.loss))
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: no parameter changed"
    assert all(bool(torch.isfinite(p).all()) for p in after.values())


def check_resume_eval_and_trace(name: str, tmp_path: Path) -> None:
    """Interrupted after epoch 0 and resumed equals the uninterrupted run (metrics, weights,
    method state, trace); trace rows carry the OGM-GE monitor's ``score/``, ``ratio/``,
    ``coeff/`` and the method's own keys; ``ogmge eval``'s accuracy equals ``predict``'s."""
    bundle = tiny_bundle()
    full = train(contract_config(tmp_path / "full", name), datasets=bundle)
    cut_cfg = contract_config(tmp_path / "cut", name)
    try:
        train(cut_cfg, datasets=bundle, callbacks=[stop_after(0)])
    except Stop:
        pass
    else:
        raise AssertionError("the run was not interrupted")
    resumed = train(cut_cfg, resume=True, datasets=bundle)
    assert resumed.start_epoch == 1
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    a, b = (load_checkpoint_file(r.run_dir / "last.pt") for r in (full, resumed))
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert repr(a["method"]) == repr(b["method"])
    trace = load_run(full.run_dir).trace()
    assert trace == load_run(resumed.run_dir).trace()
    for row in trace:
        assert {"score/a", "ratio/a", "coeff/b", "loss", "epoch", "step"} <= set(row), sorted(row)
    method_keys = set(Trainer(contract_config(tmp_path / "keys", name, out=None), datasets=bundle)
                      .method.trace_row())  # before any step: a subset of what a step logs
    assert method_keys <= set(trace[-1])
    # eval equals predict, on the selected checkpoint
    best = full.run_dir / "best.pt"
    metrics = evaluate_checkpoint(best, split="test", datasets=bundle)
    loaded = load_checkpoint(best)
    test: TinyDataset = bundle.test
    out = predict(loaded, {"a": test.a, "b": test.b})
    correct = int((out["pred"] == test.labels).sum())
    assert round(metrics["acc"] * metrics["n"]) == correct and metrics["n"] == len(test.labels)
    assert abs(metrics["acc"] - full.test_metrics["acc"]) < 1e-12
