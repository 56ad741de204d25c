"""Executing a plan: run states, jobs with dependencies, and the executor interface.

An :class:`Executor` runs :class:`Job` s (one training run each, or another piece of
work a job names, e.g. a trial of a tuned comparison) and reports an :class:`Outcome`
per job; the caller may add jobs as outcomes arrive (``on_finish`` returns them). Jobs may name other jobs they ``need``: an executor
starts a job only after every job it needs is ``done``; when one of them fails
(or is unavailable), the job is not started and its outcome is ``failed`` with
the reason (:class:`Schedule` holds this rule, so every executor applies it the
same way). :class:`LocalExecutor` runs the jobs in this process (``jobs=1``) or in
a pool of spawned worker processes; a cluster executor is a second class with the
same ``run`` method (its work function and jobs are picklable by design).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Protocol

from .. import checkpoint as ckpt_mod
from ..config import TrainConfig
from ..logs import RESULTS

#: State of a run's directory before a (re)run: ``done`` (results.json), ``resume``
#: (a checkpoint), ``restart`` (a directory without either: failed before its first
#: checkpoint) or ``new``.
RunState = Literal["done", "resume", "restart", "new"]
#: ``done``: trained; ``failed``: raised (or a job it needs did not finish);
#: ``unavailable``: the method is not available in this version (NotImplementedError).
Status = Literal["done", "failed", "unavailable"]


def run_state(run_dir: Path) -> RunState:
    """The state of one run directory (see :data:`RunState`)."""
    if (run_dir / RESULTS).is_file():
        return "done"
    if (run_dir / ckpt_mod.LAST).is_file():
        return "resume"
    if run_dir.exists():
        return "restart"
    return "new"


@dataclass(frozen=True)
class Job:
    """One run to execute: ``config`` (``TrainConfig.to_dict()``, picklable), ``resume``
    (continue from its checkpoint), and the keys of the jobs it ``needs``.

    ``work``: what runs this job instead of the executor's own work function (a picklable
    callable ``work(config, resume)``, e.g. a module-level function or a ``functools.partial``
    of one; a tuned comparison's trials); then ``config`` is that function's input and holds
    no run directory (``out``), and what it returns is the outcome's ``value``."""

    key: str
    config: dict[str, Any]
    resume: bool = False
    needs: tuple[str, ...] = ()
    label: str = ""
    work: Callable[[dict, bool], Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a job: ``status``, wall ``seconds`` inside training (done only),
    ``error`` (``"Type: message"``; failed and unavailable), ``value``: what a job's own
    ``work`` returned (done only; None for training runs)."""

    key: str
    status: Status
    seconds: float | None = None
    error: str | None = None
    value: Any = None


def outcome_of_error(key: str, exc: BaseException) -> Outcome:
    if isinstance(exc, NotImplementedError):
        return Outcome(key, "unavailable", error=str(exc))
    return Outcome(key, "failed", error=f"{type(exc).__name__}: {exc}")


def outcome_of_result(key: str, result: Any, *, own_work: bool) -> Outcome:
    """The ``done`` outcome of a job whose work returned ``result``: a training run's seconds,
    or (a job with its own ``work``) a value, whose ``seconds`` entry, if any, is kept too."""
    if not own_work:
        return Outcome(key, "done", seconds=float(result))
    seconds = result.get("seconds") if isinstance(result, dict) else None
    return Outcome(key, "done", seconds=None if seconds is None else float(seconds), value=result)


#: ``work(config_values, resume) -> seconds``: trains one run (a module-level function,
#: so that worker processes can receive it).
Work = Callable[[dict, bool], float]
#: ``on_finish(outcome)``: called once per job as it ends; it may return jobs to add to the run.
OnFinish = Callable[[Outcome], "Sequence[Job] | None"]


class Executor(Protocol):
    """Runs jobs; ``on_finish`` is called once per job, in this process, as each ends
    (dependants of a failed job get their ``failed`` outcome right after it); the jobs it
    returns, if any, join the run (how a tuned comparison keeps trials in flight)."""

    def run(self, jobs: Sequence[Job], on_finish: OnFinish | None = None) -> dict[str, Outcome]:
        ...


class Schedule:
    """The dependency rule shared by every executor.

    ``ready()`` hands out the jobs whose needs are all done (each once, in the order
    given); ``finish(outcome)`` records an outcome and returns the ``failed`` outcomes
    of every job that (directly or through others) needed a job that did not finish.
    A need outside ``jobs`` or a cycle is a ValueError before anything runs.
    """

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = {j.key: j for j in jobs}
        if len(self.jobs) != len(jobs):
            raise ValueError("jobs: two jobs share a key")
        for j in jobs:
            missing = [n for n in j.needs if n not in self.jobs]
            if missing:
                raise ValueError(f"job {j.key} needs {missing}, which are not in the plan")
        self.waiting = {j.key: set(j.needs) for j in jobs}
        self.started: set[str] = set()
        self.failed: set[str] = set()
        self._check_acyclic()

    def add(self, jobs: Sequence[Job]) -> None:
        """More jobs for the run (their needs: jobs known already or among them)."""
        for j in jobs:
            if j.key in self.jobs:
                raise ValueError(f"jobs: two jobs share the key {j.key}")
            self.jobs[j.key] = j
        for j in jobs:
            missing = [n for n in j.needs if n not in self.jobs]
            if missing:
                raise ValueError(f"job {j.key} needs {missing}, which are not in the plan")
            if any(n in self.failed for n in j.needs):
                raise ValueError(f"job {j.key} needs a job that did not finish")
            self.waiting[j.key] = {n for n in j.needs if n in self.waiting}
        self._check_acyclic()

    def record(self, outcome: Outcome, outcomes: dict[str, Outcome], on_finish: OnFinish | None) -> None:
        """Record ``outcome`` and those of the jobs it blocks in ``outcomes``, tell
        ``on_finish`` of each and add the jobs it returns."""
        for o in [outcome, *self.finish(outcome)]:
            outcomes[o.key] = o
            if on_finish is not None:
                more = on_finish(o)
                if more:
                    self.add(more)

    def _check_acyclic(self) -> None:
        left = {k: set(v) for k, v in self.waiting.items()}
        while left:
            free = [k for k, v in left.items() if not v]
            if not free:
                raise ValueError(f"jobs: the needs form a cycle among {sorted(left)}")
            for k in free:
                del left[k]
            for v in left.values():
                v.difference_update(free)

    def ready(self) -> list[Job]:
        out = [self.jobs[k] for k, v in self.waiting.items() if not v and k not in self.started]
        self.started.update(j.key for j in out)
        return out

    def finish(self, outcome: Outcome) -> list[Outcome]:
        self.waiting.pop(outcome.key, None)
        if outcome.status == "done":
            for v in self.waiting.values():
                v.discard(outcome.key)
            return []
        self.failed.add(outcome.key)
        blocked: list[Outcome] = []
        why = {outcome.key: outcome.error or outcome.status}
        changed = True
        while changed:
            changed = False
            for key in list(self.waiting):
                failed_needs = [n for n in self.jobs[key].needs if n in why]
                if failed_needs and key not in self.started:
                    n = failed_needs[0]
                    reason = f"not run: it needs {n}, which did not finish ({why[n]})"
                    why[key] = reason
                    blocked.append(Outcome(key, "failed", error=reason))
                    self.failed.add(key)
                    del self.waiting[key]
                    changed = True
        return blocked

    @property
    def pending(self) -> bool:
        return bool(self.waiting)


def train_job(values: dict, resume: bool) -> float:
    """Train one run (in this process or a worker); the wall seconds of its training
    (``Trainer.fit``: epochs, evaluation, checkpoints), not of building its data and model
    or of a worker's first imports, so that runs compare by what they compute."""
    from ..loop import train

    if _WORKER_DEVICE is not None:
        values = {**values, "device": _WORKER_DEVICE}
    return float(train(TrainConfig.from_dict(values), resume=resume).seconds)


_WORKER_DEVICE: str | None = None


def worker_device() -> str | None:
    """The device this pool worker was given (None outside a pool with devices)."""
    return _WORKER_DEVICE
#: How often (seconds) a worker checks that the compare that started it still runs.
PARENT_POLL_SECONDS = 1.0


def die_with_parent(parent: int | None = None) -> None:
    """Make this process end when its parent does: ``PR_SET_PDEATHSIG`` (SIGKILL) on Linux,
    and everywhere a daemon thread that polls the parent's pid (a re-parented worker
    would otherwise finish its queue and then block forever). ``parent``: the pid the
    parent had when it started this process (default: the current parent's); a worker whose
    parent died before it got here sees another parent and ends at once."""
    import signal
    import threading

    parent = os.getppid() if parent is None else parent
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="ogmge-parent-watch", daemon=True).start()


def _worker_init(threads: int | None, devices, parent: int | None = None) -> None:
    global _WORKER_DEVICE
    import signal

    import torch

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the compare's to handle: it stops the workers
    from .. import loop  # noqa: F401 - imported before any run is timed

    if threads:
        torch.set_num_threads(threads)
    if devices is not None:
        _WORKER_DEVICE = devices.get()


class LocalExecutor:
    """Today's executor: ``jobs`` runs at once on this machine.

    ``jobs=1``: one after another in this process (on ``devices[0]`` when given), with
    ``threads`` torch threads while they run; more: a pool of ``jobs`` spawned worker
    processes, ``threads`` torch threads each, one CUDA device each when ``devices`` are
    given. ``work`` trains one job (default :func:`train_job`). Workers end with this
    process (:func:`die_with_parent`) and ignore SIGINT: a Ctrl-C (KeyboardInterrupt here)
    cancels the jobs not started, stops the running ones and re-raises; finished jobs
    have been reported.
    """

    def __init__(self, jobs: int = 1, *, threads: int | None = None, devices: Sequence[str] | None = None,
                 work: Work | None = None) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
        self.jobs = jobs
        self.threads = threads
        self.devices = list(devices) if devices else None
        self.work: Work = work or train_job

    def __repr__(self) -> str:
        return f"LocalExecutor(jobs={self.jobs}, threads={self.threads}, devices={self.devices})"

    def capacity(self) -> int:
        """Jobs that run at once."""
        return self.jobs

    def run(self, jobs: Sequence[Job], on_finish: OnFinish | None = None) -> dict[str, Outcome]:
        schedule = Schedule(jobs)
        outcomes: dict[str, Outcome] = {}

        def record(outcome: Outcome) -> None:
            schedule.record(outcome, outcomes, on_finish)

        if self.jobs <= 1:
            self._run_here(schedule, record)
        else:
            self._run_pool(schedule, record)
        return outcomes

    def _run_here(self, schedule: Schedule, record: Callable[[Outcome], None]) -> None:
        while True:
            ready = schedule.ready()
            if not ready:
                return
            for job in ready:
                values = dict(job.config)
                if self.devices:
                    values["device"] = self.devices[0]
                try:
                    with _torch_threads(self.threads):
                        result = (job.work or self.work)(values, job.resume)
                except Exception as exc:  # noqa: BLE001 - reported, the other jobs go on
                    record(outcome_of_error(job.key, exc))
                else:
                    record(outcome_of_result(job.key, result, own_work=job.work is not None))

    def _run_pool(self, schedule: Schedule, record: Callable[[Outcome], None]) -> None:
        ctx = get_context("spawn")
        queue = None
        if self.devices:
            queue = ctx.Queue()
            for d in self.devices[: self.jobs]:
                queue.put(d)
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_worker_init,
                                   initargs=(self.threads, queue, os.getpid()))
        try:
            pending: dict[Future, Job] = {}

            def submit() -> None:
                for job in schedule.ready():
                    pending[pool.submit(job.work or self.work, dict(job.config), job.resume)] = job

            submit()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # noqa: BLE001 - reported, the other jobs go on
                        record(outcome_of_error(job.key, exc))
                    else:
                        record(outcome_of_result(job.key, result, own_work=job.work is not None))
                submit()
        except BaseException:
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (a pool's own exit would wait
    for every queued job)."""
    processes = list(getattr(pool, "_processes", {}).values())  # the pool keeps them privately
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=10)
        if p.is_alive():  # pragma: no cover - a worker that ignores SIGTERM
            p.kill()
            p.join(timeout=10)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op threads set to ``threads`` for the block (unchanged when None)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_jobs(config: TrainConfig) -> tuple[int, int | None, list[str] | None]:
    """``(jobs, threads per run, devices)``: on CUDA one run per device; on the CPU one
    run per core with one thread each."""
    import torch

    cuda = config.device != "cpu" and torch.cuda.is_available() and (
        config.device == "auto" or config.device.startswith("cuda"))
    if cuda:
        if config.device not in ("auto", "cuda"):
            return 1, None, None  # one named device: runs one after another on it
        n = torch.cuda.device_count()
        return n, None, [f"cuda:{i}" for i in range(n)]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores), 1, None


__all__ = ["Executor", "Job", "LocalExecutor", "OnFinish", "Outcome", "RunState", "Schedule", "Status", "Work",
           "default_jobs", "die_with_parent", "outcome_of_error", "outcome_of_result", "run_state", "stop_pool",
           "train_job", "worker_device"]
