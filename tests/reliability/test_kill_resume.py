"""Kill -9 trials: a run killed anywhere and resumed ends
exactly as an uninterrupted run (weights and optimizer state bit-identical; metrics.jsonl,
trace.jsonl and results.json equal row for row, timing fields excepted), and at no kill
point do ``last.pt`` and ``best.pt`` disagree."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ogmge.training import TrainConfig, load_checkpoint_file, load_run, train
from support.reliability_helpers import (
    assert_same_run,
    cli,
    run_in_child,
    snapshot,
    tiny_npz,
    tiny_values,
)

TESTS = Path(__file__).resolve().parents[1]  # on the child's path: the support package
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill trials fork a child process (POSIX)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Data, the uninterrupted runs (with and without validation) and their event sequences."""
    root = tmp_path_factory.mktemp("reference")
    data = tiny_npz(root / "d.npz")
    out = {"data": data, "root": root}
    for label, val in (("val", 0.25), ("noval", 0.0)):
        values = tiny_values(data, root / label, val_fraction=val)
        killed, events = run_in_child(values)
        assert not killed
        out[label] = (values, snapshot(root / label), events)
    return out


def _kill_then_finish(tmp_path, values, kill_at) -> tuple[bool, Path]:
    """Kill a run at ``kill_at``; check the previous checkpoint loads; finish it by resuming
    (or, when it died before its first checkpoint, by starting over)."""
    run = tmp_path / "run"
    values = dict(values, out=str(run))
    killed, _ = run_in_child(values, kill_at=kill_at)
    assert killed
    cfg = TrainConfig.from_dict(values)
    if (run / "last.pt").exists():
        load_checkpoint_file(run / "last.pt")  # the previous checkpoint always loads
        train(cfg, resume=True)
    else:
        train(cfg, overwrite=True)
    return killed, run


def _nth(prefix: str, n: int, suffix: str = ""):
    """Kill at the n-th event whose name starts with ``prefix`` (and ends with ``suffix``)."""
    def match(event):
        return event.startswith(prefix) and event.endswith(suffix)
    return lambda events: match(events[-1]) and sum(map(match, events)) == n


# a real CLI process killed after a checkpoint ------------------------------------------------------
def test_cli_run_killed_after_a_checkpoint_resumes_with_identical_logs(tmp_path, reference):
    """A real ``ogmge train`` process, SIGKILLed right after epoch 1's last.pt is renamed into place:
    the logs of epoch 1 must be on disk already (they were lost in Python's buffer before)."""
    values, expected, _ = reference["val"]
    run = tmp_path / "run"
    script = (
        "import sys, support.reliability_helpers as h\n"
        "k = h.Killer(None)\n"
        "base = k.hit\n"
        "def hit(name):\n"
        "    base(name)\n"
        "    return name == 'after replace last.pt' and k.events.count(name) == 2\n"
        "k.hit = hit\n"
        "h.install_kill_hooks(k)\n"
        "sys.exit(h.cli(*sys.argv[1:]))\n"
    )
    import ogmge

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(Path(ogmge.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    args = ["train", "--data", str(reference["data"]), "--out", str(run), "--epochs", "3", "--batch-size", "8",
            "--lr", "0.1", "--seed", "3", "--alpha", "0.5", "--val-fraction", "0.25", "--device", "cpu",
            "--no-progress", "--set", "model_options={hidden: 4, out_dim: 8}", "--set", "lr_step=2"]
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in load_run(run).metrics] == [0, 1]
    assert {t["epoch"] for t in load_run(run).trace()} == {0, 1}
    assert cli("train", "--resume", run) == 0
    assert_same_run(snapshot(run), expected)


# a kill between the two files of an epoch ----------------------------------------------------------
@pytest.mark.parametrize("n", [3, 4], ids=["after-first-file", "after-second-file"])
def test_kill_between_the_two_files_of_an_epoch(tmp_path, reference, n):
    """Without validation every epoch is the best, so each writes both files: killing after
    the first or second ``.pt`` rename of epoch 1 must leave a consistent pair."""
    values, expected, _ = reference["noval"]
    run = tmp_path / "run"
    killed, _ = run_in_child(dict(values, out=str(run)), kill_at=lambda ev: (
        _nth("after replace", n, ".pt")(ev)))
    assert killed
    last = load_checkpoint_file(run / "last.pt")
    best = load_checkpoint_file(load_run(run).checkpoint_path("best"))  # what `ogmge eval RUN` reads
    assert best["epoch"] == last["best"]["epoch"]
    assert best["epoch"] == last["epoch"]  # without validation the last epoch is the best
    assert all(v.equal(last["model"][k]) for k, v in best["model"].items() if hasattr(v, "equal"))
    train(TrainConfig.from_dict(dict(values, out=str(run))), resume=True)
    assert_same_run(snapshot(run), expected)


# deterministic points ---------------------------------------------------------------------------
@pytest.mark.parametrize("label, kill_at", [
    ("mid torch.save of the 2nd checkpoint file", _nth("mid torch.save", 2)),
    ("after fsync, before rename of the 3rd checkpoint file", _nth("before replace", 3, ".pt")),
    ("before an optimizer step of epoch 2", _nth("optimizer step", 6)),
    ("mid torch.save of the first checkpoint file", _nth("mid torch.save", 1)),
], ids=lambda x: x if isinstance(x, str) else "")
def test_kill_at_deterministic_points(tmp_path, reference, label, kill_at):
    values, expected, _ = reference["val"]
    _, run = _kill_then_finish(tmp_path, values, kill_at)
    assert_same_run(snapshot(run), expected)


# random points ----------------------------------------------------------------------------------
@pytest.mark.parametrize("half", [0, 1])
def test_kill_at_random_points(tmp_path, reference, half):
    """20 trials (10 per half, seeded): kill at a random event of the run -- an optimizer step,
    a checkpoint save (before or half written), an fsync, a rename (before or after)."""
    values, expected, events = reference["val"]
    rng = random.Random(1234 + half)
    for trial in range(10):
        at = rng.randint(1, len(events))
        _, run = _kill_then_finish(tmp_path / f"t{trial}", values, at)
        assert_same_run(snapshot(run), expected)
