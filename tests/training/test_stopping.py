"""Selection and early-stopping rules on fabricated validation curves, and across a resume."""

from __future__ import annotations

import pytest
import yaml

from ogmge.training import TrainConfig, load_run, train
from ogmge.training.checkpoint import atomic_save, load_checkpoint_file
from ogmge.training.stopping import RawRule, SmoothedRule, build_rule, compatible, resolve
from support.training_standins import (
    Stop,
    metric_rows,
    stop_after,
    tiny_bundle,
    tiny_config,
    tiny_model,
)


def run_curve(rule, accs, losses=None):
    """Feed a curve to ``rule`` until it says stop; ``(epochs run, selected epoch)``."""
    for t, acc in enumerate(accs):
        d = rule.update(t, {"acc": acc, "loss": 1.0 if losses is None else losses[t]})
        if d.stop:
            return t + 1, rule.best_epoch
    return len(accs), rule.best_epoch


# An early one-epoch spike (0.9 at epoch 1), then a real plateau at 0.6 (epochs 5-9), then 0.4.
SPIKE = [0.2, 0.9, 0.2, 0.2, 0.2] + [0.6] * 5 + [0.4] * 30


def test_rule_constants_follow_the_budget():
    r = SmoothedRule(epochs=40, patience="auto")
    assert (r.window, r.min_epochs, r.patience) == (5, 16, 10)
    r = SmoothedRule(epochs=100, patience="auto")
    assert (r.window, r.min_epochs, r.patience) == (5, 40, 25)
    r = SmoothedRule(epochs=12, patience="auto")
    assert (r.window, r.min_epochs, r.patience) == (1, 5, 10)
    assert SmoothedRule(epochs=16, patience=3).window == 2 and SmoothedRule(epochs=16, patience=3).patience == 3
    assert RawRule(epochs=40, patience="auto").patience == 10 and RawRule(epochs=40, patience=None).patience is None


def test_smoothed_rule_ignores_a_one_epoch_spike():
    # Trailing means (w=5): t1 (0.2+0.9)/2 = 0.55; t5 2.1/5 = 0.42; t7 2.2/5 = 0.44; t8 2.6/5 = 0.52;
    # t9 3.0/5 = 0.60 (the maximum); then 0.56, 0.52, ... So the selected epoch is 9, and the run
    # stops after epoch 19 (19 - 9 = 10 = patience; 20 >= 16 = min epochs): 20 epochs.
    assert run_curve(SmoothedRule(epochs=40, patience="auto"), SPIKE) == (20, 9)
    # The raw rule keeps the spike and stops 10 epochs after it.
    assert run_curve(RawRule(epochs=40, patience="auto"), SPIKE) == (12, 1)


def test_smoothed_scores_are_trailing_means():
    rule = SmoothedRule(epochs=40, patience="auto")
    scores = [rule.update(t, {"acc": a, "loss": 1.0}).score for t, a in enumerate(SPIKE[:11])]
    expected = [0.2, 0.55, 1.3 / 3, 1.5 / 4, 0.34, 0.42, 0.36, 0.44, 0.52, 0.6, 0.56]
    assert scores == pytest.approx(expected, abs=1e-12)


def test_no_stop_before_the_minimum_epochs():
    # flat curve, equal losses: the best stays epoch 0 (ties keep the earlier epoch); patience 25 is
    # exhausted after epoch 25, but the minimum of 40 epochs holds the run until epoch 39
    assert run_curve(SmoothedRule(epochs=100, patience="auto"), [0.5] * 100) == (40, 0)
    assert run_curve(RawRule(epochs=100, patience="auto"), [0.5] * 100) == (11, 0)
    assert run_curve(SmoothedRule(epochs=100, patience=None), [0.5] * 100) == (100, 0)


def test_ties_go_to_the_lower_validation_loss():
    # window 1 (8 epochs): equal accuracies, loss 1.0, 0.8, 0.9 -> epoch 1
    rule = SmoothedRule(epochs=8, patience="auto")
    decisions = [rule.update(t, {"acc": 0.5, "loss": v}) for t, v in enumerate([1.0, 0.8, 0.9])]
    assert [d.is_best for d in decisions] == [True, True, False] and rule.best_epoch == 1


def test_without_validation_the_last_epoch_is_kept():
    rule = SmoothedRule(epochs=40, patience="auto")
    assert all(rule.update(t, None).is_best for t in range(30)) and not rule.should_stop(29)


def test_state_dict_resumes_the_same_decisions_with_the_recorded_constants():
    full = SmoothedRule(epochs=40, patience="auto")
    want = [full.update(t, {"acc": a, "loss": 1.0}) for t, a in enumerate(SPIKE)]
    first = SmoothedRule(epochs=40, patience="auto")
    for t, a in enumerate(SPIKE[:7]):
        first.update(t, {"acc": a, "loss": 1.0})
    state = yaml.safe_load(yaml.safe_dump(first.state_dict()))  # survives serialisation
    later = SmoothedRule(epochs=80, patience="auto")  # a resume with a larger budget keeps the run's rule
    later.load_state_dict(state)
    assert (later.window, later.min_epochs, later.patience) == (5, 16, 10)
    got = [later.update(t, {"acc": a, "loss": 1.0}) for t, a in enumerate(SPIKE) if t >= 7]
    assert got == want[7:]
    with pytest.raises(ValueError, match="raw_v1"):
        RawRule(epochs=40, patience=10).load_state_dict(state)


def test_rule_names_resolve_to_versions():
    assert resolve("auto", "generic") == "smoothed_v1" and resolve("auto", "paper") == "raw_v1"
    assert resolve("raw", "generic") == "raw_v1" and resolve("smoothed_v1", "paper") == "smoothed_v1"
    assert compatible("auto", "raw_v1") and compatible("raw", "raw_v1") and not compatible("smoothed", "raw_v1")
    assert isinstance(build_rule("smoothed_v1", epochs=4, patience=None), SmoothedRule)
    with pytest.raises(ValueError, match="stopping must be one of"):
        TrainConfig(stopping="median")


def test_a_run_records_its_rule_and_resumes_with_it(tmp_path):
    full = train(tiny_config(tmp_path / "full", epochs=4), datasets=tiny_bundle(), model=tiny_model)
    assert load_run(full.run_dir).config.stopping == "smoothed_v1"  # the custom model: generic defaults
    cfg = tiny_config(tmp_path / "cut", epochs=4)
    with pytest.raises(Stop):
        train(cfg, datasets=tiny_bundle(), model=tiny_model, callbacks=[stop_after(1)])
    assert load_checkpoint_file(cfg.out + "/last.pt")["stopping"]["rule"] == "smoothed_v1"
    resumed = train(cfg, resume=True, datasets=tiny_bundle(), model=tiny_model)
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    assert resumed.best_epoch == full.best_epoch and resumed.test_metrics == full.test_metrics
    with pytest.raises(ValueError, match="stopping: checkpoint 'smoothed_v1', now 'raw'"):
        train(cfg.replace(epochs=5, stopping="raw"), resume=True, datasets=tiny_bundle(), model=tiny_model)


def test_a_run_from_before_rules_had_names_resumes_with_the_raw_rule(tmp_path):
    cfg = tiny_config(tmp_path, epochs=3)
    with pytest.raises(Stop):
        train(cfg, datasets=tiny_bundle(), model=tiny_model, callbacks=[stop_after(1)])
    path = tmp_path / "run" / "last.pt"
    ck = load_checkpoint_file(path)
    del ck["config"]["stopping"], ck["stopping"]  # what an older release wrote
    atomic_save(ck, path)
    resumed = train(cfg, resume=True, datasets=tiny_bundle(), model=tiny_model)  # stopping: auto
    run = load_run(tmp_path / "run")
    assert run.config.stopping == "raw_v1" and run.results["stopping"]["rule"] == "raw_v1"
    accs = [r["val/acc"] for r in resumed.history]
    assert resumed.best_epoch == accs.index(max(accs))  # raw: first epoch of highest validation accuracy
    assert resumed.selected_by == "val acc"
