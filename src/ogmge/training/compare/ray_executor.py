"""Running a comparison's jobs as Ray tasks (``ogmge compare --backend ray``; docs/training.md,
"On a cluster").

:class:`RayExecutor` is the second implementation of the :class:`~.execute.Executor`
interface: each job becomes one Ray task with its own resource request
(``cpus_per_run`` CPUs, ``gpus_per_run`` GPUs), scheduled by Ray on any node of the
cluster, under the same dependency rule as the local pool (:class:`~.execute.Schedule`:
a job starts once every job it needs is done; a failed need fails its dependants).

What a task writes is what a local run writes: the run's directory (checkpoints,
``results.json``, logs) on storage every worker sees. A task sets torch's intra-op
threads to ``cpus_per_run`` itself (Ray's own ``OMP_NUM_THREADS`` is not relied on),
so a run's figures are bit-identical to a local run with the same threads per run.

**Faults.** Ray re-executes a task whose worker process died (``max_retries``: node or
worker death, a kill by signal, out of memory); an exception raised by training is not
retried (it would raise again) and is reported as the run's failure, the other runs go
on. A re-executed task finds what its earlier attempt left: a run directory with
``last.pt`` resumes from it (``train(..., resume=True)``), one without a checkpoint is
cleared and started again; each attempt is counted in the run directory
(:data:`ATTEMPTS` in the comparison directory) and a retry says so in the log. A driver that is killed and
restarted continues from the comparison directory exactly as the local backend does.

**Jobs with their own work** (``Job.work``: a tuned comparison's trials) have no run
directory: the task sets the threads and runs the work; a re-executed one starts again.

Ray is an optional extra: ``pip install "ogmge[ray]"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .execute import Job, OnFinish, Outcome, Schedule, Work, outcome_of_error, outcome_of_result

#: Folder of the comparison directory counting, per run, the Ray task attempts that started it
#: (a run directory itself holds only what ``train`` writes).
ATTEMPTS = ".ray-attempts"
#: Default number of re-executions of a task whose worker died.
MAX_RETRIES = 3
NEEDS_EXTRA = "--backend ray needs Ray, an optional extra: pip install \"ogmge[ray]\""


class RayUnavailable(ValueError):
    """Ray is not installed (the message names the extra to install)."""


def import_ray():
    """The ``ray`` module, or :class:`RayUnavailable` naming the extra."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(NEEDS_EXTRA) from None
    return ray


def _check_shared_storage(run_dir: Path) -> None:
    """The comparison directory (two levels above the run's) must be visible and writable here."""
    root = run_dir.parent.parent
    host = os.uname().nodename
    if not root.is_dir():
        raise OSError(
            f"the Ray worker on host {host!r} cannot see the comparison directory {root}: it must be on "
            "storage every worker sees (a shared file system mounted at the same path on every node)")
    probe = root / f".ray-write-test-{host}-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"the Ray worker on host {host!r} cannot write the comparison directory {root} "
                      f"({exc.strerror or exc}): it must be on shared storage writable by every worker") from None


def attempts_file(run_dir: Path) -> Path:
    """Where the attempts of the run in ``run_dir`` (``DIR/<group>/seed-<k>``) are counted."""
    return run_dir.parent.parent / ATTEMPTS / f"{run_dir.parent.name}__{run_dir.name}"


def _attempts(run_dir: Path) -> int:
    try:
        return int(attempts_file(run_dir).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _count_attempt(run_dir: Path) -> int:
    n = _attempts(run_dir) + 1
    path = attempts_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{n}\n")
    return n


def run_task(work: Work, values: dict, resume: bool, threads: int | None) -> dict:
    """The body of one Ray task: check the storage, set the threads, detect a retry, train.

    Returns ``{"seconds": what work reports (the run's training, ``Trainer.fit``),
    "work_seconds": the wall time of the whole work call (building data and model, training,
    writing results: what ``train()`` takes), "task_seconds": the task's own wall time,
    "attempt": n, "host": hostname}``; ``task_seconds - work_seconds`` is what running the
    work as a Ray task adds inside the worker."""
    import logging
    import shutil

    import torch

    from .. import checkpoint as ckpt_mod

    t_task = time.perf_counter()
    if not values.get("out"):  # a job with its own work (a trial): no run directory to check or resume
        if threads:
            torch.set_num_threads(int(threads))
        result = work(values, resume)
        return {"value": result, "task_seconds": time.perf_counter() - t_task, "attempt": None,
                "host": os.uname().nodename}
    run_dir = Path(values["out"])
    _check_shared_storage(run_dir)
    if threads:
        torch.set_num_threads(int(threads))
    attempts_before = _attempts(run_dir)  # the driver clears the count when it submits the task
    if attempts_before > 0:  # an earlier attempt of this task died: continue from what it left
        if (run_dir / ckpt_mod.LAST).is_file():
            resume = True
            how = f"resuming from {run_dir / ckpt_mod.LAST}"
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            resume = False
            how = "starting again (it died before its first checkpoint)"
        logging.getLogger("ogmge").warning("Ray retry (attempt %d) of %s: %s", attempts_before + 1, run_dir, how)
    attempt = _count_attempt(run_dir)
    t_work = time.perf_counter()
    seconds = work(values, resume)
    done = time.perf_counter()
    return {"seconds": seconds, "work_seconds": done - t_work, "task_seconds": done - t_task, "attempt": attempt,
            "host": os.uname().nodename}


class RayExecutor:
    """Runs jobs as Ray tasks on the cluster at ``address`` (None: a local Ray runtime
    with ``num_cpus`` CPUs; ``"auto"``: the cluster this machine belongs to).

    ``cpus_per_run`` CPUs (and torch threads) and ``gpus_per_run`` GPUs per task;
    ``max_retries`` re-executions of a task whose worker died; ``work`` trains one job
    (default :func:`~.execute.train_job`; a module-level function, shipped to the workers).
    ``init_seconds`` and ``task_stats`` hold what the last ``run`` measured.
    """

    def __init__(self, *, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0,
                 max_retries: int = MAX_RETRIES, num_cpus: int | None = None, work: Work | None = None,
                 runtime_env: dict | None = None) -> None:
        for name, value in (("cpus_per_run", cpus_per_run), ("max_retries", max_retries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "cpus_per_run" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'cpus_per_run' else 0}, got {value!r}")
        if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float)) or gpus_per_run < 0:
            raise ValueError(f"gpus_per_run must be a number >= 0, got {gpus_per_run!r}")
        if gpus_per_run > 1:
            raise ValueError(
                f"gpus_per_run {gpus_per_run}: a run on several GPUs needs DDP inside its task (one process per "
                "GPU), which the Ray backend does not start yet; use 1 GPU per run (runs spread over the GPUs) or "
                "train the one large run with torchrun (docs/training.md, 'Distributed')")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.runtime_env = runtime_env
        from .execute import train_job

        self.work: Work = work or train_job
        self.ray = import_ray()
        self.init_seconds: float | None = None
        self.task_stats: dict[str, dict] = {}

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, cpus_per_run={self.cpus_per_run}, "
                f"gpus_per_run={self.gpus_per_run}, max_retries={self.max_retries})")

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            self.init_seconds = 0.0
            return
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.address is not None:
            kwargs["address"] = self.address
        elif self.num_cpus is not None:
            kwargs["num_cpus"] = self.num_cpus
        if self.runtime_env is not None:
            kwargs["runtime_env"] = self.runtime_env
        ray.init(**kwargs)
        self.init_seconds = time.perf_counter() - t0

    def capacity(self) -> int:
        """Tasks of this executor's size that the cluster runs at once now (starts Ray)."""
        self._init()
        res = self.ray.cluster_resources()
        n = int(res.get("CPU", 1) // self.cpus_per_run)
        if self.gpus_per_run:
            n = min(n, int(res.get("GPU", 0) // self.gpus_per_run))
        return max(1, n)

    def run(self, jobs: Sequence[Job], on_finish: OnFinish | None = None) -> dict[str, Outcome]:
        ray = self.ray
        schedule = Schedule(jobs)
        outcomes: dict[str, Outcome] = {}
        self._init()
        task = ray.remote(run_task).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries,
            retry_exceptions=False)

        def record(outcome: Outcome) -> None:
            schedule.record(outcome, outcomes, on_finish)

        pending: dict[Any, Job] = {}
        submitted: dict[str, float] = {}

        def submit() -> None:
            for job in schedule.ready():
                if job.config.get("out"):
                    attempts_file(Path(job.config["out"])).unlink(missing_ok=True)
                ref = task.remote(job.work or self.work, dict(job.config), job.resume, self.cpus_per_run)
                pending[ref] = job
                submitted[job.key] = time.perf_counter()

        try:
            submit()
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        stats = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - reported, the other jobs go on
                        record(outcome_of_error(job.key, _unwrap(ray, exc)))
                    else:
                        stats["driver_seconds"] = time.perf_counter() - submitted[job.key]
                        if job.work is None:
                            self.task_stats[job.key] = stats
                            record(Outcome(job.key, "done", seconds=stats["seconds"]))
                        else:
                            self.task_stats[job.key] = {k: v for k, v in stats.items() if k != "value"}
                            record(outcome_of_result(job.key, stats["value"], own_work=True))
                submit()
        except BaseException:
            self._cancel(list(pending))
            raise
        return outcomes

    def _cancel(self, refs: list, timeout: float = 60.0) -> None:
        """Ctrl-C or a driver error: kill the tasks still running and wait until they have
        ended, so that no worker still writes into a run directory a rerun may clear."""
        ray = self.ray
        for ref in refs:
            ray.cancel(ref, force=True)
        deadline = time.monotonic() + timeout
        left = refs
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=max(0.1, deadline - time.monotonic()))


def _unwrap(ray, exc: BaseException) -> BaseException:
    """The training error inside a Ray task error (``RayTaskError``), or a worker death
    described as such after the retries ran out."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    if isinstance(exc, ray.exceptions.WorkerCrashedError) or type(exc).__name__ in (
            "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        return RuntimeError(f"the Ray worker died ({type(exc).__name__}) and the retries ran out: {exc}")
    return exc


__all__ = ["ATTEMPTS", "MAX_RETRIES", "RayExecutor", "RayUnavailable", "import_ray", "run_task"]
