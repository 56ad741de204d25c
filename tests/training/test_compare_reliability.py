"""compare under hostile use: data changed under a comparison, two compares on one directory,
Ctrl-C and kill -9 with workers running, what the time column measures, threads, and bad
--out paths or damaged files (clear errors, exit 2)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main
from ogmge.interfaces.compare_report import compare
from ogmge.training.compare import (
    SETTINGS,
    CompareInterrupted,
    ComparisonLock,
    LockedError,
    Settings,
)
from support.compare_data import tiny_config, tiny_npz
from support.compare_work import LOG_ENV, alive, started

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "training" / "fixtures" / "comparison-v1"


def other_npz(path: Path) -> Path:
    """The same file name with other content: 5 classes, 90 samples."""
    rng = np.random.default_rng(1)
    n = 90
    labels = np.arange(n) % 5
    split = np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 9)
    return save_byo(path, {"a": rng.normal(size=(n, 6)).astype(np.float32) + labels[:, None],
                           "b": rng.normal(size=(n, 4)).astype(np.float32)}, labels,
                    kinds={"a": "vector", "b": "vector"}, split=split)


def run_cmp(data, out, seeds=(0,), **kw):
    return compare(tiny_config(data), out=out, methods=["normal"], seeds=list(seeds), jobs=1, echo=None,
                   progress=False, **kw)


# ---------------------------------------------------------------- the data changed under a comparison
def test_a_comparison_extended_after_its_data_changed_is_refused(tmp_path):
    data = tiny_npz(tmp_path / "d.npz")
    out = tmp_path / "cmp"
    run_cmp(data, out)
    other_npz(data)
    with pytest.raises(ValueError, match=r"holds a comparison trained on other data: .*d.npz .* then, .*now; "
                                         r"its finished runs would be averaged"):
        run_cmp(data, out, seeds=(0, 1))
    assert not (out / "normal" / "seed-1").exists()
    # a comparison written before compare.yaml recorded the fingerprint: its runs' checkpoints answer
    values = yaml.safe_load((out / SETTINGS).read_text())
    del values["data_fingerprint"]
    (out / SETTINGS).write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="holds a comparison trained on other data"):
        run_cmp(data, out, seeds=(0, 1))


# ---------------------------------------------------------------- one compare per directory
def test_a_second_compare_on_the_same_directory_is_refused_and_a_stale_lock_taken_over(tmp_path):
    data = tiny_npz(tmp_path / "d.npz")
    out = tmp_path / "cmp"
    out.mkdir()
    with ComparisonLock(out):  # a compare runs there
        with pytest.raises(LockedError, match=rf"{out} is in use: another ogmge compare \(pid {os.getpid()} "):
            run_cmp(data, out)
    assert not (out / SETTINGS).exists()
    run_cmp(data, out)  # once it has gone
    # the lock file of a compare that died (its pid gone): taken over without a word
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    (out / ".compare.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    assert run_cmp(data, out, seeds=(0, 1))["seeds"] == [0, 1]


# ---------------------------------------------------------------- Ctrl-C, in this process
def test_ctrl_c_in_compare_jobs_1_keeps_finished_runs_and_says_how_to_continue(tmp_path, monkeypatch, capsys):
    import ogmge.training.compare.execute as execute

    data = tiny_npz(tmp_path / "d.npz")
    out = tmp_path / "cmp"
    real = execute.train_job
    calls: list[str] = []

    def ctrl_c_on_the_second_run(values, resume):
        calls.append(values["out"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(values, resume)

    monkeypatch.setattr(execute, "train_job", ctrl_c_on_the_second_run)
    flags = ["--data", str(data), "--methods", "normal", "--seeds", "0", "--jobs", "1", "--out", str(out),
             "--epochs", "1", "--no-plot", "--no-progress"]
    assert main(["compare", *flags]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"ogmge compare: interrupted: 1 of 3 runs finished and kept in {out}; rerun the same command to continue "
        "(interrupted runs resume from their last checkpoint)"), err
    assert (out / "normal" / "seed-0" / "results.json").is_file()
    ComparisonLock(out).acquire().release()  # the lock went with the compare
    monkeypatch.setattr(execute, "train_job", real)
    assert main(["compare", *flags]) == 0  # the same command continues
    assert "1 finished, 0 to resume, 2 to train" in capsys.readouterr().out
    # Python: the interruption is a KeyboardInterrupt that says the same
    monkeypatch.setattr(execute, "train_job", ctrl_c_on_the_second_run)
    calls.clear()
    with pytest.raises(CompareInterrupted, match="1 of 3 runs finished") as stop:
        run_cmp(data, tmp_path / "py")
    assert isinstance(stop.value, KeyboardInterrupt)


# ---------------------------------------------------------------- Ctrl-C and kill -9, a real process
SCRIPT = """
import sys
import ogmge.training.compare.execute as execute
from support.compare_work import sleepy_work
from ogmge.interfaces.cli import main
execute.train_job = sleepy_work
sys.exit(main(sys.argv[1:]))
"""


def start_compare(tmp_path: Path, jobs: int) -> tuple[subprocess.Popen, Path, Path]:
    data = tiny_npz(tmp_path / "d.npz")
    out, log = tmp_path / "cmp", tmp_path / "log"
    log.mkdir()
    import ogmge

    env = dict(os.environ, **{LOG_ENV: str(log)}, PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(Path(ogmge.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    args = ["compare", "--data", str(data), "--methods", "normal", "--seeds", "0,1", "--jobs", str(jobs),
            "--out", str(out), "--epochs", "1", "--no-plot", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(started(log)) >= jobs or proc.poll() is not None, what=f"{jobs} runs to start")
    assert proc.poll() is None, proc.communicate()
    return proc, out, log


def wait_for(cond, *, what: str, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_one_ctrl_c_stops_a_compare_cleanly(tmp_path, jobs):
    proc, out, log = start_compare(tmp_path, jobs)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"ogmge compare: interrupted: 0 of 6 runs finished and kept in {out}; rerun the same "
                     "command to continue (interrupted runs resume from their last checkpoint)"], err
    assert len(started(log)) == jobs  # the queued runs were cancelled, not trained
    for pid, _ in started(log):
        assert not alive(pid)


@pytest.mark.slow
def test_workers_die_with_a_killed_compare(tmp_path):
    proc, out, log = start_compare(tmp_path, 2)
    workers = [pid for pid, _ in started(log)]
    assert all(alive(pid) for pid in workers)
    proc.kill()
    proc.communicate(timeout=60)
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the workers to end", limit=60)
    assert len(started(log)) == 2  # nothing else started after the compare died


# ---------------------------------------------------------------- what is timed, on how many threads
def test_the_time_of_a_run_is_its_training_not_building_it(monkeypatch):
    import ogmge.training.loop as loop
    from ogmge.training.compare import train_job

    class Result:
        seconds = 1.25

    def slow_to_build(config, resume=False):
        time.sleep(0.2)  # data, model, first imports: not the run's cost
        return Result()

    monkeypatch.setattr(loop, "train", slow_to_build)
    assert train_job(tiny_config(Path("x.npz")), False) == 1.25


def test_runs_in_this_process_use_one_torch_thread(tmp_path, monkeypatch):
    import ogmge.training.compare.execute as execute

    data = tiny_npz(tmp_path / "d.npz")
    real = execute.train_job
    threads: list[int] = []

    def record(values, resume):
        threads.append(torch.get_num_threads())
        return real(values, resume)

    monkeypatch.setattr(execute, "train_job", record)
    torch.set_num_threads(2)
    summary = run_cmp(data, tmp_path / "cmp")
    assert threads == [1, 1, 1] and summary["threads_per_run"] == 1
    assert torch.get_num_threads() == 2  # given back afterwards


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize("where", ["under-a-file", "sys", "read-only"])
def test_an_unwritable_out_is_a_clear_error(tmp_path, capsys, monkeypatch, where):
    data = tiny_npz(tmp_path / "d.npz")
    (tmp_path / "file").write_text("x")
    out = {"under-a-file": tmp_path / "file" / "cmp", "sys": Path("/sys/ogmge-compare-test"),
           "read-only": tmp_path / "ro" / "cmp"}[where]
    if where == "read-only":
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["compare", "--data", str(data), "--methods", "normal", "--seeds", "0", "--jobs", "1",
                 "--out", str(out), "--no-plot", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"ogmge compare: error: --out {out}: cannot write the comparison there: "), err
    assert {"under-a-file": "a part of the path is a file", "sys": "Operation not permitted",
            "read-only": "Read-only file system"}[where] in err


def copy_of_fixture(tmp_path: Path) -> Path:
    out = tmp_path / "cmp"
    shutil.copytree(FIXTURE, out)
    return out


def rerun(out: Path) -> None:
    settings = Settings.load(out)
    compare(settings.config, out=out, methods=settings.methods, seeds=settings.seeds, jobs=1, echo=None,
            progress=False)


def test_a_corrupt_compare_yaml_names_the_file_and_the_fix(tmp_path):
    out = copy_of_fixture(tmp_path)
    config = Settings.load(out).config
    (out / SETTINGS).write_text("methods: [normal\nseeds: {")
    with pytest.raises(ValueError, match=rf"{out / SETTINGS} is not valid YAML \(.*\); restore it, or delete "
                                         rf"{out} \(its finished runs go with it\) or use another --out"):
        compare(config, out=out, methods=["normal"], seeds=[0], jobs=1, echo=None, progress=False)
    (out / SETTINGS).write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="is not a comparison's settings file"):
        compare(config, out=out, methods=["normal"], seeds=[0], jobs=1, echo=None, progress=False)


def test_a_corrupt_results_json_names_the_file_and_the_fix(tmp_path):
    out = copy_of_fixture(tmp_path)
    (out / "ogm_ge" / "seed-1" / "results.json").write_text('{"val": {"acc": 0.5')
    with pytest.raises(ValueError, match=rf"{out / 'ogm_ge/seed-1/results.json'} is not valid JSON .*; delete "
                                         rf"{out / 'ogm_ge/seed-1'} to train that run again"):
        rerun(out)
    (out / "ogm_ge" / "seed-1" / "results.json").write_text('["not", "a", "run"]')
    with pytest.raises(ValueError, match="expected a JSON object of a run's results"):
        rerun(out)


def test_a_worker_whose_parent_died_before_it_started_ends_at_once():
    """A pool worker still starting when its compare was killed has been re-parented already:
    it is told the pid its parent had, sees another parent, and exits instead of waiting forever
    for jobs (holding the dead compare's output pipes open)."""
    import subprocess
    import sys

    code = ("import time; from ogmge.training.compare.execute import die_with_parent; "
            "die_with_parent(parent=1); time.sleep(30)")  # pid 1 is not this process's parent
    proc = subprocess.run([sys.executable, "-c", code], timeout=20)
    assert proc.returncode == 1
