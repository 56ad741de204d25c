"""``run_comparison``: plan -> execute -> summarise -> select, for one comparison directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...io_utils import atomic_write_text
from ..config import TrainConfig
from ..logs import RESULTS
from ..results import RunResults
from .cost import estimate_run_seconds, fmt_seconds
from .execute import Executor, Job, LocalExecutor, Outcome, default_jobs, run_state
from .lock import ComparisonLock
from .lookups import known_methods
from .plan import (
    DEFAULT_SEEDS,
    SETTINGS,
    Plan,
    Settings,
    base_config,
    check_candidates,
    check_method_options,
    check_out,
    check_seeds,
    comparison_stopping,
    make_out,
    reconcile,
    resolve_aliases,
    run_methods,
    stored_modalities,
)
from .select import TIE_TOLERANCE, Verdict, check_tolerance, select
from .summary import TIMING, Summary, read_timing, summarize


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and x != x) else f"{100 * x:.1f}"


def run_comparison(
    config: TrainConfig | dict | str | Path | None = None,
    *,
    out: str | Path,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    jobs: int | None = None,
    tie_tolerance: float = TIE_TOLERANCE,
    echo: Callable[[str], None] | None = print,
    progress: bool = True,
    executor: Executor | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: int | None = None,
    gpus_per_run: float = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> tuple[Summary, Verdict]:
    """Train what ``out`` lacks of ``methods`` x ``seeds`` and each modality alone; return the
    summary of every finished run and its verdict. Writes ``compare.yaml``, the run
    directories and ``timing.json`` (the report files are the interfaces' job:
    ``ogmge.compare`` writes them). ``executor``: how runs execute (default
    :class:`LocalExecutor` with ``jobs`` runs at once, or ``backend="ray"``: a
    :class:`~.ray_executor.RayExecutor` on the cluster at ``address``); ``cpus_per_run``:
    torch threads (and, under Ray, CPUs) per run in either backend; ``method_options``:
    ``{method: {option: value}}`` for that method's runs; arguments as ``ogmge.compare``.
    """
    say = echo or (lambda _msg: None)
    check_backend(backend, cpus_per_run, gpus_per_run)
    base = base_config(config, settings)
    if base.val_fraction == 0:
        raise ValueError("val_fraction must be > 0 for compare: the verdict is chosen on the validation split "
                         "(got val_fraction 0)")
    check_tolerance(tie_tolerance)
    out = Path(out)
    # candidates: every (method, prediction) pair of each method; an alias stands for its pair
    methods_ = check_candidates(resolve_aliases(known_methods() if methods is None else methods))
    seeds_ = check_seeds(seeds)
    options_ = check_method_options(method_options, run_methods(methods_))
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    check_out(out)
    make_out(out)
    with ComparisonLock(out):
        return _run_locked(base, out, methods_, seeds_, options_, jobs=jobs, tie_tolerance=tie_tolerance, say=say,
                           progress=progress, executor=executor, backend=backend, address=address,
                           cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)


class CompareInterrupted(KeyboardInterrupt):
    """A compare stopped by Ctrl-C; ``str()`` is the one line saying what was kept and how to go on."""


def check_same_data(out: Path, stored: Settings | None, current: dict) -> None:
    """Refuse to extend a comparison whose runs were trained on other data (compare.yaml's
    fingerprint, or for an older comparison each finished run's checkpoint)."""
    if stored is None:
        return
    recorded = [stored.data_fingerprint] if stored.data_fingerprint else []
    if not recorded:  # written before compare.yaml recorded it: ask the finished runs
        from .. import checkpoint as ckpt_mod

        for path in sorted(out.glob(f"*/seed-*/{ckpt_mod.LAST}")):
            if (path.parent / RESULTS).is_file():
                try:
                    fp = ckpt_mod.load_checkpoint_file(path, map_location="cpu").get("data_fingerprint")
                except Exception:  # noqa: BLE001 - an unreadable checkpoint says nothing about the data
                    continue
                if fp:
                    recorded.append(fp)
    for fp in recorded:
        if fp.get("kind") in (None, "custom") or fp.get("sha256") == current.get("sha256"):
            continue
        raise ValueError(
            f"{out} holds a comparison trained on other data: {fp.get('source')} (sha256 "
            f"{str(fp.get('sha256'))[:16]}...) then, {current.get('source')} (sha256 "
            f"{str(current.get('sha256'))[:16]}...) now; its finished runs would be averaged with runs on the new "
            f"data. Use another --out for the new data, or delete {out} to start again"
        )


def _run_locked(base: TrainConfig, out: Path, methods_: list[str], seeds_: list[int],
                options_: dict[str, dict[str, Any]], *, jobs: int | None,
                tie_tolerance: float, say, progress: bool, executor: Executor | None, backend: str,
                address: str | None, cpus_per_run: int | None, gpus_per_run: float) -> tuple[Summary, Verdict]:
    from ..fingerprint import data_fingerprint

    stored = Settings.load(out) if (out / SETTINGS).is_file() else None
    methods_, seeds_ = reconcile(out, base, methods_, seeds_, options_)
    fingerprint = data_fingerprint(base)
    check_same_data(out, stored, fingerprint)
    auto_jobs, threads, devices = default_jobs(base)
    if jobs is None:
        jobs = auto_jobs
    if devices is not None:
        jobs = min(jobs, len(devices))
    if cpus_per_run is not None:
        threads = cpus_per_run
    executor = backend_executor(executor, backend, address, cpus_per_run, gpus_per_run)

    modalities = stored_modalities(out)
    estimate = None
    if modalities is None:
        estimate, modalities = estimate_run_seconds(base)
    if len(modalities) < 2:
        raise ValueError(f"compare needs at least two modalities to balance; the data has {modalities}")
    rule = comparison_stopping(out, base, modalities, stored)  # the rule the comparison began with
    Settings(methods_, seeds_, modalities, base, fingerprint, options_, rule).save(out)
    plan = Plan.build(out, base.replace(stopping=rule), methods_, seeds_, modalities, options_)
    states = {r: run_state(plan.run_dir(r)) for r in plan.runs}
    todo = [r for r in plan.runs if states[r] != "done"]
    timing = read_timing(out)
    known = [timing[r.key] for r in plan.runs if states[r] == "done" and r.key in timing]
    if todo and not known and estimate is None:
        estimate, _ = estimate_run_seconds(base)
    per_run = sum(known) / len(known) if known else (estimate or 0.0)
    source = "finished runs" if known else "timing a few training steps"
    parallel = min(jobs, max(len(todo), 1))
    total = per_run * len(todo) / parallel
    say(f"ogmge compare: {len(plan.runs)} runs ({len(run_methods(methods_))} methods + {len(modalities)} modalities alone, "
        f"x {len(seeds_)} seeds {seeds_}) in {out}/: {len(plan.runs) - len(todo)} finished, "
        f"{sum(states[r] == 'resume' for r in todo)} to resume, {sum(states[r] != 'resume' for r in todo)} to train")
    if todo:
        where = f"{parallel} at once" + (f", {threads} thread{'s' if threads != 1 else ''} each" if threads else "")
        start = "" if parallel <= 1 else " plus a few seconds to start the worker processes"
        if backend == "ray":
            where = f"Ray tasks of {cpus_per_run or 1} CPU(s)" + (f", {gpus_per_run} GPU(s)" if gpus_per_run else "")
            start = " plus the Ray runtime's start"
        say(f"  estimate: about {fmt_seconds(total)}{start} ({fmt_seconds(per_run)} per run from {source}; "
            f"{where})")

    failed: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    if todo:
        run = executor or LocalExecutor(parallel, threads=threads, devices=devices)
        try:
            execute_plan(plan, todo, states, run, timing=timing, failed=failed, unavailable=unavailable, say=say,
                         progress=progress)
        except KeyboardInterrupt:
            kept = sum(run_state(plan.run_dir(r)) == "done" for r in plan.runs)
            raise CompareInterrupted(
                f"interrupted: {kept} of {len(plan.runs)} runs finished and kept in {out}; rerun the same "
                "command to continue (interrupted runs resume from their last checkpoint)") from None
    summary = replace(summarize(out), jobs=parallel if todo else jobs, threads_per_run=threads, failed=failed,
                      unavailable=unavailable)
    return summary, select(summary, tie_tolerance)


BACKENDS = ("local", "ray")


def check_backend(backend: str, cpus_per_run: int | None, gpus_per_run: float) -> None:
    """Refuse an unknown backend or resource request, naming it."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if cpus_per_run is not None and (isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int)
                                     or cpus_per_run < 1):
        raise ValueError(f"cpus_per_run must be an integer >= 1, got {cpus_per_run!r}")
    if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float)) or gpus_per_run < 0:
        raise ValueError(f"gpus_per_run must be a number >= 0, got {gpus_per_run!r}")
    if gpus_per_run and backend != "ray":
        raise ValueError("gpus_per_run is a Ray resource request (backend 'ray'); the local backend puts one "
                         "run on each CUDA device")


def backend_executor(executor: Executor | None, backend: str, address: str | None, cpus_per_run: int | None,
                     gpus_per_run: float) -> Executor | None:
    """``executor`` when given; else for ``backend="ray"`` a :class:`~.ray_executor.RayExecutor` on
    the cluster at ``address`` with ``cpus_per_run`` (default 1) CPUs and ``gpus_per_run`` GPUs per
    run; else None (the caller's local processes). The request is checked (:func:`check_backend`)."""
    check_backend(backend, cpus_per_run, gpus_per_run)
    if executor is not None or backend != "ray":
        return executor
    from .ray_executor import RayExecutor

    return RayExecutor(address=address, cpus_per_run=cpus_per_run or 1, gpus_per_run=gpus_per_run)


def execute_plan(plan: Plan, todo, states, executor: Executor, *, timing: dict[str, float],
                 failed: dict[str, str], unavailable: dict[str, str], say, progress: bool) -> None:
    """Run ``todo`` (runs of ``plan``) on ``executor``; record seconds, failures and lines."""
    from tqdm.auto import tqdm

    by_key = {r.key: r for r in todo}
    finished_before = {r.key for r in plan.runs if states[r] == "done"}
    bar = tqdm(total=len(todo), desc="compare", unit="run", disable=not progress, dynamic_ncols=True)
    count = [0]

    def finished(o: Outcome) -> None:
        run = by_key[o.key]
        count[0] += 1
        head = f"[{count[0]}/{len(todo)}] {run.label} seed {run.seed}"
        if o.status == "done":
            seconds = o.seconds or 0.0
            timing[run.key] = timing.get(run.key, 0.0) * (states[run] == "resume") + seconds
            atomic_write_text(plan.out / TIMING, json.dumps(timing, indent=2) + "\n")
            res = RunResults.read(plan.run_dir(run) / RESULTS)
            how = "resumed, " if states[run] == "resume" else ""
            line = (f"{head}: val {_pct(res.metric('val', 'acc'))}, test {_pct(res.metric('test', 'acc'))} "
                    f"({how}{seconds:.0f} s)")
        elif o.status == "unavailable":
            unavailable[run.method] = o.error or ""
            shutil.rmtree(plan.run_dir(run), ignore_errors=True)
            line = f"{head}: not available ({o.error})"
        else:
            failed[run.key] = o.error or "failed"
            line = f"{head}: FAILED ({o.error})"
        with tqdm.external_write_mode():  # the line above the bar, through ``echo``
            say(line)
        bar.update(1)

    jobs = []
    for run in todo:
        if states[run] == "restart":  # failed before its first checkpoint: compare owns the directory
            shutil.rmtree(plan.run_dir(run))
        jobs.append(Job(run.key, plan.config_of(run).to_dict(), resume=states[run] == "resume",
                        needs=tuple(n for n in run.needs if n not in finished_before), label=run.label))
    try:
        executor.run(jobs, finished)
    finally:
        bar.close()


__all__ = ["CompareInterrupted", "backend_executor", "check_backend", "check_same_data", "execute_plan",
           "run_comparison"]
