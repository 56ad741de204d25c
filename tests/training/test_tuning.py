"""Tuned comparisons: the verdict reads half B only, the test split nothing; the study store
resumes, refuses changed spaces, records pruned and interrupted trials as such."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState

from ogmge.data.byo import save_byo
from ogmge.training import TrainConfig
from ogmge.training.compare import Outcome
from ogmge.training.compare.plan import base_config
from ogmge.training.compare.tuning import (
    SHARED_SPACE,
    Candidate,
    Param,
    Protocol,
    Pruned,
    SnapshotPruner,
    SpaceChanged,
    TrialOutcome,
    apply_params,
    best_trial,
    candidate_space,
    choose_folds,
    ensure_default,
    make_pruner,
    method_params,
    open_study,
    record_session,
    run_trials,
    study_report,
    tune_comparison,
)
from support.compare_data import tiny_config, tiny_npz

SPACE = [Param("alpha", "log_uniform", 0.05, 2.0)]
PROTO = Protocol(seed=1)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------ fabricated runs
class FakeExecutor:
    """Writes each final run's results.json and config.yaml: half A, half B and test
    accuracy from ``scores(method, modality, config) -> (a, b, test)``."""

    def __init__(self, scores) -> None:
        self.scores = scores
        self.ran: list[str] = []

    def run(self, jobs, on_finish=None):
        out = {}
        for job in jobs:
            cfg = TrainConfig.from_dict(job.config)
            a, b, test = self.scores(cfg)
            run_dir = Path(cfg.out)
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / "config.yaml")
            (run_dir / "results.json").write_text(json.dumps(
                {"val": {"acc": a}, "holdout": {"acc": b}, "test": {"acc": test}}))
            self.ran.append(job.key)
            out[job.key] = Outcome(job.key, "done", seconds=0.0)
            if on_finish:
                on_finish(out[job.key])
        return out


def fake_trials(score_a):
    """A trial runner scoring each setting ``score_a(candidate, params)`` on half A."""
    def runner(candidate, params, report):
        value = score_a(candidate, params)
        for epoch in range(3):
            if report(epoch, value):
                raise Pruned("pruned")
        return TrialOutcome(value)
    return runner


def _tuned(tmp_path, name, score_a, score_b, trials=4):
    data = tiny_npz(tmp_path / "tiny.npz")
    base = base_config(tiny_config(data), {})
    out = tmp_path / name

    def scores(cfg):
        return score_a(cfg), score_b(cfg), 0.5

    report = tune_comparison(base, out, methods=["normal", "ogm_ge"], modalities=["a", "b"], seeds=[0, 1],
                             trials=trials, cv=0, tune_shared="none", runner=fake_trials(lambda c, p: score_a(
                                 base.replace(**p, method=c.method))), executor=FakeExecutor(scores),
                             pruner="none", say=lambda _m: None)
    return report


def test_the_verdict_reads_half_b_only(tmp_path):
    # ogm_ge's half-A score peaks at alpha = 0.3; its half-B score is what the verdict compares
    def a_peak(cfg, other=0.0):
        return 0.9 - abs(np.log(cfg.alpha / 0.3)) * 0.1 + other if cfg.resolved_method == "ogm_ge" else 0.6

    def b_low(cfg):
        return 0.55 if cfg.resolved_method == "ogm_ge" else 0.6

    first = _tuned(tmp_path, "one", a_peak, b_low)
    chosen = first["candidates"]["ogm_ge"]["tuned"]["params"]
    assert first["verdict"]["selected"] == "normal"  # B: normal 0.6 > ogm_ge 0.55, although A favours ogm_ge
    assert first["candidates"]["ogm_ge"]["chosen_half_a"] > 0.6

    # half-A scores of the settings not chosen changed (lowered): same chosen setting, same verdict
    def a_changed(cfg):
        same = abs(cfg.alpha - chosen["alpha"]) < 1e-12
        return a_peak(cfg) if same or cfg.resolved_method != "ogm_ge" else a_peak(cfg) - 0.2

    second = _tuned(tmp_path, "two", a_changed, b_low)
    assert second["candidates"]["ogm_ge"]["tuned"]["params"] == chosen
    assert second["verdict"] == first["verdict"]

    # half-B scores changed: the verdict follows them
    third = _tuned(tmp_path, "three", a_peak, lambda cfg: 0.7 if cfg.resolved_method == "ogm_ge" else 0.6)
    assert third["verdict"]["selected"] == "ogm_ge"
    assert third["verdict"]["scores"]["ogm_ge"] == pytest.approx(0.7)


def test_default_is_the_first_point_and_ties_keep_it(tmp_path):
    report = _tuned(tmp_path, "flat", lambda cfg: 0.5, lambda cfg: 0.5)
    e = report["candidates"]["ogm_ge"]
    default = {"alpha": 0.8, "modulation_starts": 0, "modulation_ends": 50}  # alpha and the window
    assert e["history"][0]["default"] and e["history"][0]["params"] == default
    assert e["chosen_trial"] == 0 and e["tuned"]["params"] == e["default_params"] == default
    assert e["optimism"] == pytest.approx(0.0)


# ------------------------------------------------------------------ the store
def test_interrupted_trial_marked_failed_and_rerun_fills_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(url, "ogm_ge", space=SPACE, protocol=PROTO, sampler_seed=0)
    ensure_default(study, {"alpha": 0.8})
    trial = study.ask({p.key: p.distribution() for p in SPACE})  # the default, then the driver is killed
    trial.set_user_attr("driver", f"{__import__('socket').gethostname()}:{_dead_pid()}")
    del study

    study = open_study(url, "ogm_ge", space=SPACE, protocol=PROTO, sampler_seed=0)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL]
    assert study.get_trials()[0].user_attrs["failed"] == "interrupted"
    ensure_default(study, {"alpha": 0.8})  # the interrupted default is enqueued again
    ran = run_trials(study, Candidate("ogm_ge"), SPACE, 3, fake_trials(lambda c, p: p["alpha"] / 10))
    assert ran == {"complete": 3, "pruned": 0, "failed": 0}
    rep = study_report(study, {"alpha": 0.8})
    assert rep["trials"] == {"complete": 3, "pruned": 0, "failed": 0, "interrupted": 1}
    assert rep["history"][1]["params"] == {"alpha": 0.8} and rep["history"][1]["default"]
    assert not rep["reproducible"]
    # a larger budget adds trials to the same study
    run_trials(study, Candidate("ogm_ge"), SPACE, 5, fake_trials(lambda c, p: p["alpha"] / 10))
    counts = study_report(study, {"alpha": 0.8})["trials"]
    assert counts["complete"] + counts["pruned"] == 5


def test_a_running_trial_of_a_live_driver_is_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(url, "x", space=SPACE, protocol=PROTO, sampler_seed=0)
    trial = study.ask({p.key: p.distribution() for p in SPACE})
    trial.set_user_attr("driver", f"{__import__('socket').gethostname()}:1")  # pid 1 lives
    study = open_study(url, "x", space=SPACE, protocol=PROTO, sampler_seed=0)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]


def test_changed_space_refused_naming_the_option(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(url, "s", space=SPACE, protocol=PROTO, sampler_seed=0)
    with pytest.raises(SpaceChanged, match="alpha"):
        open_study(url, "s", space=[Param("alpha", "log_uniform", 0.1, 2.0)], protocol=PROTO, sampler_seed=0)
    with pytest.raises(SpaceChanged, match="lr"):
        open_study(url, "s", space=SPACE + [SHARED_SPACE[1]], protocol=PROTO, sampler_seed=0)
    with pytest.raises(SpaceChanged, match="protocol"):
        open_study(url, "s", space=SPACE, protocol=Protocol(seed=1, folds=5), sampler_seed=0)


def test_pruned_trials_recorded_as_pruned_never_as_scores(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(url, "p", space=SPACE, protocol=PROTO, sampler_seed=0, pruner="median")
    ensure_default(study, {"alpha": 0.8})
    calls = []

    def runner(candidate, params, report):
        calls.append(params["alpha"])
        value = 0.8 if len(calls) <= 3 else 0.1  # after 3 good trials, every trial is clearly behind
        for epoch in range(6):
            if report(epoch, value):
                raise Pruned(f"pruned after epoch {epoch + 1}")
        return TrialOutcome(value)

    ran = run_trials(study, Candidate("ogm_ge"), SPACE, 6, runner)
    assert ran == {"complete": 3, "pruned": 3, "failed": 0}
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert len(pruned) == 3 and all(max(t.intermediate_values) == 2 for t in pruned)  # stopped at warm-up's end
    assert best_trial(study).state == TrialState.COMPLETE
    rep = study_report(study, {"alpha": 0.8})
    assert all(h["value"] is None for h in rep["history"] if h["state"] == "PRUNED")


def test_study_reproduces_from_its_seed_when_sequential_and_uninterrupted(tmp_path):
    params = []
    for name in ("a", "b"):
        study = open_study(f"sqlite:///{tmp_path / (name + '.db')}", "s", space=SPACE, protocol=PROTO,
                           sampler_seed=7)
        ensure_default(study, {"alpha": 0.8})
        run_trials(study, Candidate("ogm_ge"), SPACE, 5, fake_trials(lambda c, p: -abs(p["alpha"] - 0.3)))
        from ogmge.training.compare.tuning import record_session

        record_session(study, {"complete": 5}, finished=True)
        params.append([t.params for t in study.get_trials()])
        assert study_report(study, {"alpha": 0.8})["reproducible"]
    assert params[0] == params[1]


# ------------------------------------------------------------------ trials as executor jobs
def _finished(value: float, epochs: int = 6, state: str = "COMPLETE") -> dict:
    return {"state": state, "value": value if state == "COMPLETE" else None,
            "intermediate": {e: value for e in range(epochs)}, "marks": {}}


def _run_judge(judge: SnapshotPruner, value: float, epochs: int = 6) -> int | None:
    """The epoch at which ``judge`` stops a trial reporting ``value`` every epoch (None: never)."""
    return next((e for e in range(epochs) if judge.report(e, value)), None)


def test_the_snapshot_rule_prunes_a_trial_clearly_behind():
    # median: 3 finished trials at 0.8 per epoch; a trial at 0.1 stops when warm-up ends (epoch index 2)
    snapshot = [_finished(0.8), _finished(0.78), _finished(0.82)]
    behind = SnapshotPruner(make_pruner("median"), snapshot)
    assert _run_judge(behind, 0.1) == 2 and behind.values == {0: 0.1, 1: 0.1, 2: 0.1}
    assert _run_judge(SnapshotPruner(make_pruner("median"), snapshot), 0.85) is None
    # fewer than 3 finished (a pruned or failed trial is not a finished score): never stopped
    few = [_finished(0.8), _finished(0.8), _finished(0.8, epochs=3, state="PRUNED"), _finished(0.8, state="FAIL")]
    assert _run_judge(SnapshotPruner(make_pruner("median"), few), 0.1) is None
    assert _run_judge(SnapshotPruner(make_pruner("none"), snapshot), 0.0) is None
    # successive halving: the rung values of the snapshot's trials compete; the rung is marked for the driver
    rungs = [{**_finished(v), "marks": {"completed_rung_0": v}} for v in (0.8, 0.7, 0.9)]
    halving = SnapshotPruner(make_pruner("halving"), rungs)
    assert _run_judge(halving, 0.1) == 2 and halving.marks() == {"completed_rung_0": 0.1}
    ahead = SnapshotPruner(make_pruner("halving"), rungs)
    assert _run_judge(ahead, 0.95, epochs=3) is None and ahead.marks() == {"completed_rung_0": 0.95}


@pytest.mark.parametrize("pruner", ["median", "halving"])
def test_one_trial_in_flight_prunes_and_proposes_as_the_live_study_would(pruner):
    space = [Param("alpha", "log_uniform", 0.05, 2.0), Param("lr", "log_uniform", 1e-4, 1e-1)]

    def curve(params, report):  # per-epoch half-A values rising to a score that peaks at alpha 0.3, lr 0.01
        top = 0.9 - abs(np.log(params["alpha"] / 0.3)) * 0.1 - abs(np.log(params["lr"] / 0.01)) * 0.05
        for epoch in range(9):
            if report(epoch, top * (1 - 0.5 ** (epoch + 1))):
                raise Pruned("pruned")
        return TrialOutcome(top)

    def live(study, trials):  # one trial after another, each asking the study itself whether to stop
        while sum(t.state != TrialState.RUNNING for t in study.get_trials()) < trials:
            trial = study.ask({p.key: p.distribution() for p in space})
            try:
                score = curve(trial.params, lambda e, v, t=trial: t.report(v, e) or t.should_prune()).score
            except Pruned:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, score)

    runs = []
    for search in (live, lambda study, n: run_trials(
            study, Candidate("ogm_ge"), space, n, lambda c, p, report: curve(p, report))):
        study = open_study(None, "s", space=space, protocol=PROTO, sampler_seed=3,  # in memory
                           pruner=pruner)
        ensure_default(study, {"alpha": 0.8, "lr": 0.01})
        search(study, 14)
        runs.append([(t.state, t.params, t.value, t.intermediate_values, t.system_attrs) for t in study.get_trials()])
    assert runs[0] == runs[1]
    assert 3 <= sum(t[0] == TrialState.PRUNED for t in runs[0]) <= 12  # the pruner did stop trials, not all


class PairExecutor:
    """Runs jobs two at a time in this process: both are submitted (their snapshots taken)
    before either ends; the jobs ``on_finish`` returns join the queue."""

    def __init__(self) -> None:
        self.snapshots: list[int] = []

    def run(self, jobs, on_finish=None):
        queue, out = list(jobs), {}
        while queue:
            batch, queue = queue[:2], queue[2:]
            results = [(job, job.work(dict(job.config), job.resume)) for job in batch]
            for job, value in results:
                self.snapshots.append(len(job.config["snapshot"]))
                out[job.key] = Outcome(job.key, "done", seconds=value["seconds"], value=value)
                queue += list(on_finish(out[job.key]) or [])
        return out


def test_two_trials_in_flight_fill_the_budget_and_are_not_reproducible(tmp_path):
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", space=SPACE, protocol=PROTO, sampler_seed=7,
                       pruner="median")
    ensure_default(study, {"alpha": 0.8})
    pairs = PairExecutor()
    ran = run_trials(study, Candidate("ogm_ge"), SPACE, 6, fake_trials(lambda c, p: -abs(p["alpha"] - 0.3)),
                     executor=pairs, slots=2)
    assert ran["complete"] + ran["pruned"] == 6 and ran["failed"] == 0
    # each trial's snapshot: the trials finished when it was submitted (never the one in flight beside it)
    assert pairs.snapshots == [0, 0, 1, 2, 3, 4]
    states = [t.state for t in study.get_trials()]
    assert len(states) == 6 and TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert study.get_trials()[0].user_attrs["default"] and study.get_trials()[0].params == {"alpha": 0.8}
    assert all(len(t.intermediate_values) == 3 for t in study.get_trials(states=(TrialState.COMPLETE,)))
    record_session(study, ran, finished=True, in_flight=2)
    rep = study_report(study, {"alpha": 0.8})
    assert not rep["reproducible"] and rep["in_flight"] == 2


def test_trials_in_a_two_worker_pool_give_a_finished_study(tmp_path):
    import optuna

    import ogmge

    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    report = ogmge.compare(tiny_config(data, epochs=2), out=out, methods=["ogm_ge"], seeds=[0], tune=3, cv=0,
                           tune_shared="none", jobs=2, echo=None, progress=False)
    e = report["candidates"]["ogm_ge"]  # the only candidate with a space under --tune-shared none
    assert e["trials"]["complete"] + e["trials"]["pruned"] + e["trials"]["failed"] == 3
    assert e["trials"]["interrupted"] == 0 and e["chosen_trial"] is not None
    assert report["in_flight"] == 2 and e["in_flight"] == 2 and not report["reproducible"]
    study = optuna.load_study(study_name="ogm_ge", storage=f"sqlite:///{out / 'tuning.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.user_attrs["threads"] == 1 and len(t.intermediate_values) >= 1 for t in trials)
    assert report["verdict"]["selected"] in ("normal", "ogm_ge") and not report["failed"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tuned"] and summary["candidates"]["ogm_ge"]["trials"] == e["trials"]


@pytest.mark.slow
def test_a_killed_driver_with_trials_in_a_pool_reruns_to_a_full_budget(tmp_path):
    import os
    import sqlite3
    import time

    import ogmge
    from ogmge.interfaces.cli import main

    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(data), "--methods", "ogm_ge", "--seeds", "0", "--epochs", "20",
            "--batch-size", "8", "--device", "cpu", "--set", "model_options={hidden: 4, out_dim: 8}", "--no-progress",
            "--out", str(out), "--tune", "3", "--tune-shared", "none", "--cv", "0", "--pruner", "none"]
    tests = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tests), str(Path(ogmge.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "ogmge", *args, "--jobs", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def running() -> int:
        try:
            with sqlite3.connect(f"file:{out / 'tuning.db'}?mode=ro", uri=True, timeout=1) as db:  # never creates it
                return db.execute("select count(*) from trials t join trial_user_attributes a on a.trial_id = "
                                  "t.trial_id where t.state = 'RUNNING' and a.key = 'driver'").fetchone()[0]
        except sqlite3.Error:
            return 0

    end = time.monotonic() + 180
    while running() < 2:  # two trials in flight (their driver recorded): kill -9 the driver now
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < end, "gave up waiting for two trials in flight"
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=180)  # the workers end with their driver (a loaded machine may take a while)
    assert main([*args, "--jobs", "1"]) == 0  # the rerun marks them failed and completes the budget
    e = json.loads((out / "summary.json").read_text())["candidates"]["ogm_ge"]
    assert e["trials"]["interrupted"] == 2 and e["trials"]["complete"] + e["trials"]["failed"] == 3
    assert [h["failed"] for h in e["history"][:2]] == ["interrupted", "interrupted"]
    assert e["history"][2]["default"] and not e["reproducible"]


# ------------------------------------------------------------------ spaces and protocol
def test_spaces_come_from_the_method_declarations_and_hold_the_default():
    from ogmge.methods import registry

    alpha = next(o for o in registry.get("ogm_ge").options if o.name == "alpha")
    p, starts, ends = method_params("ogm_ge")
    assert (p.key, p.kind, p.low, p.high) == ("alpha", alpha.space.kind, alpha.space.low, alpha.space.high)
    assert (starts.key, ends.key) == ("modulation_starts", "modulation_ends") and starts.high <= ends.low
    base = TrainConfig(alpha=5.0)
    space = {q.key: q for q in candidate_space("ogm_ge", base, builder="generic")}
    assert space["alpha"].high == 5.0 and set(space) == {"alpha", "modulation_starts", "modulation_ends", "optimizer",
                                                         "lr", "weight_decay"}
    assert {q.key for q in candidate_space("normal", base, builder="generic", tune_shared="none")} == set()
    assert "adam" in space["optimizer"].choices
    # options without a flat key are searched through the method mapping
    (q,) = method_params("mdrop")
    assert q.key == "method.p"
    cfg = apply_params(TrainConfig(method="mdrop"), {"method.p": 0.3, "lr": 0.02})
    assert cfg.method_options["p"] == 0.3 and cfg.lr == 0.02 and cfg.resolved_method == "mdrop"


def test_cv_is_the_default_below_the_threshold():
    assert choose_folds(None, 13) == 5 and choose_folds(None, 500) == 0
    assert choose_folds(0, 13) == 0 and choose_folds(3, 500) == 3
    with pytest.raises(ValueError, match="cv"):
        choose_folds(1, 10)


# ------------------------------------------------------------------ real runs: the test split selects nothing
def _tiny_npz(path: Path, *, permute_test: bool) -> Path:
    """``support.compare_data.tiny_npz``'s data; with ``permute_test`` every test label moved to another class."""
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    a = rng.normal(size=(n, 6)).astype(np.float32) + labels[:, None]
    b = rng.normal(size=(n, 4)).astype(np.float32) + 0.3 * labels[:, None]
    split = np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 6)
    if permute_test:
        test = np.flatnonzero(split == "test")
        labels = labels.copy()
        labels[test] = (labels[test] + 1) % 3
    return save_byo(path, {"a": a, "b": b}, labels, kinds={"a": "vector", "b": "vector"}, split=split)


def test_permuted_test_labels_change_no_trial_no_choice_no_verdict(tmp_path):
    import ogmge

    data = _tiny_npz(tmp_path / "tiny.npz", permute_test=False)
    other = _tiny_npz(tmp_path / "permuted.npz", permute_test=True)
    reports = []
    for name, path in (("orig", data), ("perm", other)):
        reports.append(ogmge.compare(tiny_config(path, epochs=2), out=tmp_path / name, methods=["ogm_ge"], seeds=[0],
                                     tune=2, cv=0, tune_shared="none", jobs=1, echo=None, progress=False))
    a, b = reports
    assert a["candidates"]["ogm_ge"]["tuned"]["test"] != b["candidates"]["ogm_ge"]["tuned"]["test"]  # test did change
    for cand in a["candidates"]:
        ha, hb = a["candidates"][cand]["history"], b["candidates"][cand]["history"]
        assert [(h["params"], h["value"], h["state"]) for h in ha] == [(h["params"], h["value"], h["state"]) for h in hb]
        assert a["candidates"][cand]["tuned"]["params"] == b["candidates"][cand]["tuned"]["params"]
        assert a["candidates"][cand]["tuned"]["b"] == b["candidates"][cand]["tuned"]["b"]
    assert a["verdict"] == b["verdict"]
    on_disk = yaml.safe_load((tmp_path / "orig" / "tune.yaml").read_text())
    assert on_disk["cv"] == 0 and json.loads((tmp_path / "orig" / "summary.json").read_text())["tuned"]


def test_cli_tune_writes_default_vs_tuned_rows_and_refuses_an_untuned_rerun(tmp_path, capsys):
    from ogmge.interfaces.cli import main

    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(data), "--methods", "ogm_ge", "--seeds", "0", "--epochs", "1", "--batch-size",
            "8", "--device", "cpu", "--set", "model_options={hidden: 4, out_dim: 8}", "--no-progress",
            "--jobs", "1", "--out", str(out), "--tune", "2", "--tune-shared", "none", "--cv", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| ogm_ge" in text and "default B" in text and "Verdict (half B)" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tuned"] and summary["candidates"]["ogm_ge"]["trials"]["complete"] == 2
    with pytest.raises(ValueError, match="tuned comparison"):
        import ogmge

        ogmge.compare(tiny_config(data), out=out, methods=["ogm_ge"], seeds=[0], jobs=1, echo=None, progress=False)


def test_a_setting_whose_default_is_automatic_is_not_searched():
    """MIDAS's warm-up (None: scaled to the budget) and OGM's window end on a preset with no end
    (None) are no points of an int space: the default trial would not be enqueueable."""
    from ogmge.training.compare.tuning import candidate_space, default_point
    from ogmge.training.config import TrainConfig

    base = TrainConfig.load("builtin_paper")
    for method, key in (("midas", "method.warmup"), ("ogm_ge", "modulation_ends")):
        space = candidate_space(method, base, builder="generic")
        assert key not in {p.key for p in space}
        assert None not in default_point(space, base, "generic", method).values()
    assert "modulation_ends" in {p.key for p in candidate_space("ogm_ge", base.replace(modulation_ends=50),
                                                                  builder="generic")}
