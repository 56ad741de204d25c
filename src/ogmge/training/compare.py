"""Methods x seeds on one dataset, one table and a verdict chosen on validation (``ogmge compare``).

``compare(config, out=DIR, methods=..., seeds=...)`` trains, for every seed, every
balancing method of ``methods`` (``normal`` always included) and each modality
alone (``modalities=[m]``, method ``normal``), each an ordinary run directory::

    DIR/compare.yaml              the comparison's settings (a rerun must match them)
    DIR/<method>/seed-<k>/        one run (``ogmge train --out`` layout)
    DIR/only-<modality>/seed-<k>/ one modality alone
    DIR/timing.json               wall seconds per run (measured here; a cost, never a result)
    DIR/summary.json, DIR/summary.md

Rerunning continues the comparison: a run with ``results.json`` is finished
(skipped), one with a checkpoint is resumed (``train(config, resume=True)``),
one that failed before its first checkpoint is cleared and restarted. New
methods or seeds extend it; any other changed setting is refused, naming it.

**Selection (validation only).** Each run's score is the validation accuracy at
the epoch its validation split selected (``results.json``: ``val.acc``). A method
that fits anything on the validation split (``CROSS_FIT``: the unimodal
ensemble's weights, G-Blending's weights) must be scored by cross-fitting (fit on
one half of the validation split, score on the other, and the reverse): its runs
write ``"val_protocol": "cross-fit"`` in ``results.json`` and report cross-fitted
validation metrics (``val.acc``; a separate ``"selection_score"``, when present,
takes precedence), and that score is used. Any run whose ``results.json`` says
``val_protocol: "cross-fit"`` is scored that way. A ``CROSS_FIT`` method whose
runs do not is never selected (the reason is recorded).

The selected method has the best mean score over seeds, except that methods within
``tie_tolerance`` (default 0.5 points of accuracy) of the best go to the simplest
of them in :data:`SIMPLICITY` order. Half a point is below the seed-to-seed
spread of validation accuracy on a few hundred validation samples (one sample of
300 is a third of a point), so a smaller margin would pick a method on noise;
users with large validation splits may lower it. A unimodal run is never selected;
when the selected method's score is below the best unimodal run's mean validation
accuracy, the verdict says so (``fused_below_best_unimodal``).

The test split reports; it selects nothing. Figures are the fused test accuracy
and macro-F1 at the validation-selected epoch, as mean and sample standard
deviation (ddof 1; 0 for one seed) over seeds; paired differences are per seed
(same seed, same data split) and then mean and standard deviation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from . import checkpoint as ckpt_mod
from .config import METHOD_MODULATION, METHODS, TrainConfig
from .logs import METRICS, RESULTS, read_jsonl

#: Simplicity order for ties: a method wins a tie against every method after it.
#: Methods added later go at the end (in ``METHODS`` order).
SIMPLICITY: tuple[str, ...] = ("normal", "ogm", "ogm_ge", "opm", "mdrop", "multitask", "gblend", "uni_ensemble",
                               "mmpareto")
#: Methods that fit something on the validation split (``fits_on_validation``): selection
#: needs a cross-fitted score.
CROSS_FIT = frozenset({"uni_ensemble", "gblend", "anchored"})
#: Default tie tolerance (fraction of accuracy): 0.005 = half a point.
TIE_TOLERANCE = 0.005
DEFAULT_SEEDS = (0, 1, 2)
SETTINGS = "compare.yaml"
TIMING = "timing.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
#: Settings a rerun may change freely (where and how runs execute, not what they compute).
FREE_SETTINGS = frozenset({"device", "progress", "num_workers", "tensorboard"})
#: Settings the comparison itself sets per run (stored neutral in compare.yaml).
PER_RUN = ("method", "modulation", "opm", "seed", "out", "name")


def simplicity_rank(method: str) -> int:
    order = list(SIMPLICITY) + [m for m in METHODS if m not in SIMPLICITY]
    return order.index(method) if method in order else len(order)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: ``method`` (``normal`` for unimodal), ``modality`` (unimodal only)."""

    method: str
    seed: int
    modality: str | None = None

    @property
    def group(self) -> str:
        return f"only-{self.modality}" if self.modality else self.method

    @property
    def rel(self) -> str:
        return f"{self.group}/seed-{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.modality} alone" if self.modality else self.method


# ------------------------------------------------------------------ settings
#: Fusion heads that take exactly two modalities (one conditions the other); a modality
#: alone is then trained with a concat head (a linear classifier on its features).
PAIR_FUSIONS = ("film", "gated")


def neutral_config(config: TrainConfig) -> TrainConfig:
    """``config`` without what the comparison sets per run (method, seed, out, name)."""
    values = config.to_dict()
    defaults = TrainConfig().to_dict()
    for key in PER_RUN:
        values[key] = defaults[key] if key not in ("method", "out", "name") else None
    values["progress"] = False
    return TrainConfig.from_dict(values)


def run_config(base: TrainConfig, run: PlannedRun, out: str | Path) -> TrainConfig:
    """The configuration of one run of the comparison in ``out``."""
    modulation, opm = METHOD_MODULATION.get(run.method, ("Normal", False))
    changes: dict[str, Any] = {
        "method": run.method, "modulation": modulation, "opm": opm, "seed": run.seed,
        "out": str(Path(out) / run.rel), "name": f"{run.label} seed {run.seed}", "progress": False,
    }
    if run.modality is not None:
        changes["modalities"] = [run.modality]
        if base.fusion in PAIR_FUSIONS:  # conditioned on one modality by another: a single one needs concat
            changes["fusion"] = "concat"
            changes["model_options"] = {k: v for k, v in base.model_options.items() if k != "fusion_options"}
    return base.replace(**changes)


def _check_methods(methods: Iterable[str]) -> list[str]:
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {list(METHODS)}")
    out = ["normal"] + [m for m in methods if m != "normal"]
    return sorted(dict.fromkeys(out), key=simplicity_rank)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    return sorted(dict.fromkeys(seeds))


def _reconcile(out: Path, base: TrainConfig, methods: list[str], seeds: list[int]) -> tuple[list[str], list[int]]:
    """Merge with ``out``'s stored settings: methods and seeds extend; anything else must match."""
    path = out / SETTINGS
    if not path.is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out} is not empty and holds no comparison ({SETTINGS}); refusing to write "
                             "into it: choose a new or empty directory")
        return methods, seeds
    stored = yaml.safe_load(path.read_text()) or {}
    try:
        old = TrainConfig.from_dict(stored["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a comparison's settings file ({exc}); use another --out") from None
    diffs = old.differences(base, ignore=FREE_SETTINGS)
    if diffs:
        detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diffs.items())
        raise ValueError(
            f"{out} holds a comparison with other settings ({detail}); only --methods and --seeds may be "
            f"added to it. Use another --out, or delete {out} to start again"
        )
    methods = _check_methods(list(stored.get("methods", [])) + methods)
    seeds = _check_seeds(list(stored.get("seeds", [])) + seeds)
    return methods, seeds


def _stored_modalities(out: Path) -> list[str] | None:
    path = out / SETTINGS
    if not path.is_file():
        return None
    mods = (yaml.safe_load(path.read_text()) or {}).get("modalities")
    return list(mods) if mods else None


def _save_settings(out: Path, base: TrainConfig, methods: list[str], seeds: list[int], modalities: list[str]) -> None:
    values = base.to_dict()
    for key in FREE_SETTINGS:  # not part of the comparison's identity
        values.pop(key, None)
    text = yaml.safe_dump({"methods": methods, "seeds": seeds, "modalities": modalities, "config": values},
                          sort_keys=False)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SETTINGS + ".tmp")
    tmp.write_text(text)
    tmp.replace(out / SETTINGS)


# ------------------------------------------------------------------ running
def run_state(run_dir: Path) -> str:
    """``done`` (results.json), ``resume`` (a checkpoint), ``restart`` (a directory without
    either: failed before its first checkpoint) or ``new``."""
    if (run_dir / RESULTS).is_file():
        return "done"
    if (run_dir / ckpt_mod.LAST).is_file():
        return "resume"
    if run_dir.exists():
        return "restart"
    return "new"


_WORKER_DEVICE: str | None = None


def _worker_init(threads: int | None, devices) -> None:
    global _WORKER_DEVICE
    import torch

    from . import loop  # noqa: F401 - imported before any run is timed

    if threads:
        torch.set_num_threads(threads)
    if devices is not None:
        _WORKER_DEVICE = devices.get()


def _train_one(values: dict, resume: bool) -> float:
    """Train one run (in this process or a worker); its wall seconds."""
    from .loop import train

    if _WORKER_DEVICE is not None:
        values = {**values, "device": _WORKER_DEVICE}
    start = time.perf_counter()
    train(TrainConfig.from_dict(values), resume=resume)
    return time.perf_counter() - start


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


def _read_timing(out: Path) -> dict[str, float]:
    path = out / TIMING
    if not path.is_file():
        return {}
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError):
        return {}


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def estimate_run_seconds(config: TrainConfig, *, steps: int = 3) -> tuple[float, list[str]]:
    """``(seconds of one full run, data modalities)`` from timing ``steps`` training steps
    (after one warm-up) of ``config`` on one thread; evaluation counted as a third of a
    step per validation batch. An upper bound when early stopping ends runs sooner."""
    import torch

    from . import distributed as distrib
    from .data import build_datasets
    from .factory import build_model_from_config, build_optimizer
    from .loop import _batch_loss, make_loader
    from .metrics import to_device

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        data = build_datasets(config)
        setup = time.perf_counter() - t0
        device = distrib.resolve_device(config.device, distrib.DistContext())
        torch.manual_seed(config.seed)
        model, builder = build_model_from_config(config, data.modalities, data.num_classes)
        model.to(device).train()
        optimizer = build_optimizer(config, model.parameters(), builder=builder)
        loader, _ = make_loader(data.train, config, shuffle=True, device=device)
        times = []
        for i, batch in enumerate(loader):
            if i > steps:
                break
            t = time.perf_counter()
            b = to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            out = model(b["inputs"], lengths=b["lengths"] or None, labels=b["labels"])
            _batch_loss(out, b["labels"]).backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:
                times.append(time.perf_counter() - t)
        step = sum(times) / len(times) if times else 0.0
        n_val = 0 if data.val is None else math.ceil(len(data.val) / config.batch_size)
        epoch = step * len(loader) + step / 3 * n_val
        return setup + config.epochs * epoch, list(data.modalities)
    finally:
        torch.set_num_threads(threads)


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# ------------------------------------------------------------------ the comparison
def compare(
    config: TrainConfig | dict | str | Path | None = None,
    *,
    out: str | Path,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    jobs: int | None = None,
    tie_tolerance: float = TIE_TOLERANCE,
    echo: Callable[[str], None] | None = print,
    progress: bool = True,
    **settings: Any,
) -> dict:
    """Train ``methods`` x ``seeds`` and each modality alone on ``config``'s data, write
    ``out/summary.json`` and ``out/summary.md``, and return the summary (see the module
    docstring). ``config``: a TrainConfig, a mapping of settings, a preset or YAML file,
    or None (defaults); ``settings`` override it (``data="my.npz"`` implies ``dataset="byo"``).
    ``methods`` defaults to every method of ``METHODS``; ``normal`` is always included.
    ``jobs``: runs at once (default: one per CPU core with one thread each, or one per
    CUDA device). The figure is an interface: ``ogmge.interfaces.compare_plot.plot_comparison(out)``
    (``ogmge compare`` writes it).

    Examples
    --------
    >>> import ogmge
    >>> ogmge.compare.__module__
    'ogmge.training.compare'
    >>> summary = ogmge.compare(data="my.npz", out="compare-my", methods=["ogm_ge", "opm"])  # doctest: +SKIP
    >>> summary["selected"], summary["fused_below_best_unimodal"]  # doctest: +SKIP
    ('ogm_ge', False)
    """
    say = echo or (lambda _msg: None)
    base = _base_config(config, settings)
    if base.val_fraction == 0:
        raise ValueError("val_fraction must be > 0 for compare: the verdict is chosen on the validation split "
                         "(got val_fraction 0)")
    _number_check("tie_tolerance", tie_tolerance)
    out = Path(out)
    methods = _check_methods(METHODS if methods is None else methods)
    seeds = _check_seeds(seeds)
    methods, seeds = _reconcile(out, base, methods, seeds)
    auto_jobs, threads, devices = default_jobs(base)
    if jobs is None:
        jobs = auto_jobs
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if devices is not None:
        jobs = min(jobs, len(devices))

    modalities = _stored_modalities(out)
    estimate = None
    if modalities is None:
        estimate, modalities = estimate_run_seconds(base)
    if len(modalities) < 2:
        raise ValueError(f"compare needs at least two modalities to balance; the data has {modalities}")
    _save_settings(out, base, methods, seeds, modalities)
    plan = [PlannedRun(m, s) for s in seeds for m in methods]
    plan += [PlannedRun("normal", s, modality=m) for s in seeds for m in modalities]
    states = {r: run_state(out / r.rel) for r in plan}
    todo = [r for r in plan if states[r] != "done"]
    timing = _read_timing(out)
    known = [timing[r.rel] for r in plan if states[r] == "done" and r.rel in timing]
    if todo and not known and estimate is None:
        estimate, _ = estimate_run_seconds(base)
    per_run = sum(known) / len(known) if known else (estimate or 0.0)
    source = "finished runs" if known else "timing a few training steps"
    parallel = min(jobs, max(len(todo), 1))
    if parallel <= 1 and threads:  # runs in this process, with its threads
        import torch

        threads = torch.get_num_threads()
    total = per_run * len(todo) / parallel
    say(f"ogmge compare: {len(plan)} runs ({len(methods)} methods + {len(modalities)} modalities alone, "
        f"x {len(seeds)} seeds {seeds}) in {out}/: {len(plan) - len(todo)} finished, "
        f"{sum(states[r] == 'resume' for r in todo)} to resume, {sum(states[r] != 'resume' for r in todo)} to train")
    if todo:
        where = f"{parallel} at once" + (f", {threads} thread{'s' if threads != 1 else ''} each" if threads else "")
        start = "" if parallel <= 1 else " plus a few seconds to start the worker processes"
        say(f"  estimate: about {_fmt_seconds(total)}{start} ({_fmt_seconds(per_run)} per run from {source}; "
            f"{where})")

    failed: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    if todo:
        _execute(base, out, todo, states, jobs=parallel, threads=threads, devices=devices, timing=timing,
                 failed=failed, unavailable=unavailable, say=say, progress=progress)
    summary = summarize(out, tie_tolerance=tie_tolerance)
    summary["jobs"] = parallel if todo else jobs
    summary["threads_per_run"] = threads
    summary["failed"] = failed
    summary["unavailable"] = unavailable
    write_summary(out, summary)
    return summary


def _number_check(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _base_config(config, settings: dict) -> TrainConfig:
    if config is None:
        values = TrainConfig().to_dict()
    elif isinstance(config, TrainConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = {**TrainConfig().to_dict(), **config}
    else:
        values = TrainConfig.load(config).to_dict()
    values.update(settings)
    if settings.get("data") and "dataset" not in settings:
        values["dataset"] = "byo"
    for key in ("data", "data_root", "split_file"):  # resolved: a rerun from elsewhere names the same files
        if values.get(key):
            values[key] = os.path.abspath(os.path.expanduser(str(values[key])))
    for key in ("method", "seed", "name"):
        if key in settings:
            raise ValueError(f"{key} is set per run by compare (methods=..., seeds=...); do not give {key}={settings[key]!r}")
    return neutral_config(TrainConfig.from_dict(values))


def _execute(base, out, todo, states, *, jobs, threads, devices, timing, failed, unavailable, say, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="compare", unit="run", disable=not progress, dynamic_ncols=True)
    done = [0]

    def finished(run: PlannedRun, seconds: float | None, error: BaseException | None) -> None:
        done[0] += 1
        if error is None:
            timing[run.rel] = timing.get(run.rel, 0.0) * (states[run] == "resume") + seconds
            _write_json(out / TIMING, timing)
            res = json.loads((out / run.rel / RESULTS).read_text())
            val = (res.get("val") or {}).get("acc")
            test = (res.get("test") or {}).get("acc")
            how = "resumed, " if states[run] == "resume" else ""
            line = (f"[{done[0]}/{len(todo)}] {run.label} seed {run.seed}: val {_pct(val)}, test {_pct(test)} "
                    f"({how}{seconds:.0f} s)")
        elif isinstance(error, NotImplementedError):
            unavailable[run.method] = str(error)
            shutil.rmtree(out / run.rel, ignore_errors=True)
            line = f"[{done[0]}/{len(todo)}] {run.label} seed {run.seed}: not available ({error})"
        else:
            failed[run.rel] = f"{type(error).__name__}: {error}"
            line = f"[{done[0]}/{len(todo)}] {run.label} seed {run.seed}: FAILED ({type(error).__name__}: {error})"
        with tqdm.external_write_mode():  # the line above the bar, through ``echo``
            say(line)
        bar.update(1)

    def prepare(run: PlannedRun) -> tuple[dict, bool]:
        if states[run] == "restart":  # failed before its first checkpoint: compare owns the directory
            shutil.rmtree(out / run.rel)
        return run_config(base, run, out).to_dict(), states[run] == "resume"

    try:
        if jobs <= 1:
            for run in todo:
                values, resume = prepare(run)
                if devices:
                    values["device"] = devices[0]
                t = time.perf_counter()
                try:
                    _train_one(values, resume)
                except Exception as exc:  # noqa: BLE001 - reported, the comparison goes on
                    finished(run, None, exc)
                else:
                    finished(run, time.perf_counter() - t, None)
            return
        ctx = get_context("spawn")
        queue = None
        if devices:
            queue = ctx.Queue()
            for d in devices[:jobs]:
                queue.put(d)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                 initargs=(threads, queue)) as pool:
            pending = {pool.submit(_train_one, *prepare(run)): run for run in todo}
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    run = pending.pop(fut)
                    try:
                        seconds = fut.result()
                    except Exception as exc:  # noqa: BLE001 - reported, the comparison goes on
                        finished(run, None, exc)
                    else:
                        finished(run, seconds, None)
    finally:
        bar.close()


# ------------------------------------------------------------------ the summary
def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value); NaN when empty."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _load_results(run_dir: Path) -> dict | None:
    path = run_dir / RESULTS
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _run_seconds(out: Path, rel: str, timing: dict[str, float]) -> float:
    if rel in timing:
        return timing[rel]
    return float(sum(r.get("train/seconds") or 0.0 for r in read_jsonl(out / rel / METRICS)))


def selection_entry(method: str, results: dict) -> tuple[float | None, str, str | None]:
    """``(score, protocol, refusal)`` of one run for selection (module docstring)."""
    protocol = results.get("val_protocol") or "plain"
    val = (results.get("val") or {}).get("acc")
    if protocol == "cross-fit":  # the run's validation metrics are cross-fitted (or a separate score)
        score = results.get("selection_score", val)
        if score is None:
            return None, protocol, f"{method}: results.json says val_protocol 'cross-fit' but gives no score"
        return float(score), protocol, None
    if method in CROSS_FIT:
        return None, protocol, (
            f"{method} fits on the validation split, so its validation accuracy is optimistic; its runs do not "
            f"report a cross-fitted score (val_protocol 'cross-fit' and selection_score in results.json), "
            f"so it is not selected")
    return (None if val is None else float(val)), protocol, None


def summarize(out: str | Path, *, tie_tolerance: float = TIE_TOLERANCE) -> dict:
    """The summary of the comparison in ``out`` from its run directories' ``results.json``."""
    out = Path(out)
    settings = yaml.safe_load((out / SETTINGS).read_text())
    methods, seeds = list(settings["methods"]), list(settings["seeds"])
    base = TrainConfig.from_dict({**settings["config"]})
    timing = _read_timing(out)
    modalities: list[str] = []
    class_names: list[str] = []
    summary: dict[str, Any] = {"seeds": seeds, "methods": {}, "unimodal": {}}
    refusals: dict[str, str] = {}
    val_sizes: list[int] = []  # validation samples each run scored (cross-fitted: the whole split)
    for method in methods:
        entry: dict[str, Any] = {"seeds": [], "test_fused": [], "test_macro_f1": [], "val_fused": [],
                                 "selection_score": [], "val_protocol": None, "test_modality": {},
                                 "best_epoch": [], "seconds": [], "runs": []}
        protocols = set()
        for seed in seeds:
            run = PlannedRun(method, seed)
            res = _load_results(out / run.rel)
            if res is None:
                continue
            modalities = modalities or list(res.get("modalities") or [])
            class_names = class_names or list(res.get("class_names") or [])
            test, val = res.get("test") or {}, res.get("val") or {}
            score, protocol, refusal = selection_entry(method, res)
            protocols.add(protocol)
            if refusal:
                refusals[method] = refusal
            entry["seeds"].append(seed)
            entry["test_fused"].append(test.get("acc"))
            entry["test_macro_f1"].append(test.get("macro_f1"))
            entry["val_fused"].append(val.get("acc"))
            if isinstance(val.get("n"), int):
                val_sizes.append(val["n"])
            entry["selection_score"].append(score)
            entry["best_epoch"].append(res.get("best_epoch"))
            for m in res.get("modalities") or []:
                entry["test_modality"].setdefault(m, []).append(test.get(f"modality_acc/{m}"))
            entry["seconds"].append(_run_seconds(out, run.rel, timing))
            entry["runs"].append(run.rel)
        if not entry["runs"]:
            continue
        entry["val_protocol"] = protocols.pop() if len(protocols) == 1 else sorted(protocols)
        summary["methods"][method] = entry
    if not modalities:
        groups = sorted(p.name[5:] for p in out.glob("only-*") if p.is_dir())
        modalities = groups
    for m in modalities:
        entry = {"seeds": [], "test": [], "val": [], "test_macro_f1": [], "seconds": [], "runs": []}
        for seed in seeds:
            run = PlannedRun("normal", seed, modality=m)
            res = _load_results(out / run.rel)
            if res is None:
                continue
            entry["seeds"].append(seed)
            entry["test"].append((res.get("test") or {}).get("acc"))
            entry["val"].append((res.get("val") or {}).get("acc"))
            entry["test_macro_f1"].append((res.get("test") or {}).get("macro_f1"))
            entry["seconds"].append(_run_seconds(out, run.rel, timing))
            entry["runs"].append(run.rel)
        if entry["runs"]:
            summary["unimodal"][m] = entry
    summary["modalities"] = modalities
    summary["num_classes"] = len(class_names) or None
    summary["data"] = base.data or base.dataset
    summary["epochs"] = base.epochs
    summary["tie_tolerance"] = tie_tolerance
    summary["val_samples"] = min(val_sizes) if val_sizes else None
    summary["simplicity_order"] = [m for m in sorted(set(SIMPLICITY) | set(METHODS), key=simplicity_rank)]
    _verdict(summary, refusals, tie_tolerance)
    return summary


def _paired(a: list, a_seeds: list, b: list, b_seeds: list) -> dict:
    """Per-seed differences ``a - b`` over the seeds both have, with their mean and std."""
    by_seed = dict(zip(b_seeds, b))
    pairs = [(s, x - by_seed[s]) for s, x in zip(a_seeds, a)
             if s in by_seed and x is not None and by_seed[s] is not None]
    mean, std = mean_std([d for _, d in pairs])
    return {"seeds": [s for s, _ in pairs], "per_seed": [d for _, d in pairs], "mean": mean, "std": std}


def _verdict(summary: dict, refusals: dict[str, str], tol: float) -> None:
    methods, unimodal, seeds = summary["methods"], summary["unimodal"], summary["seeds"]
    complete = {m for m, e in methods.items() if e["seeds"] == seeds}
    # best unimodal run, by mean validation accuracy
    uni_val = {m: mean_std(e["val"])[0] for m, e in unimodal.items() if e["seeds"] == seeds}
    best_uni = max(uni_val, key=lambda m: (uni_val[m], -list(unimodal).index(m))) if uni_val else None
    summary["best_unimodal"] = best_uni
    # selection
    scores = {}
    not_selectable = dict(refusals)
    for m, e in methods.items():
        if m in refusals:
            continue
        if m not in complete:
            not_selectable[m] = f"{m}: finished {len(e['seeds'])} of {len(seeds)} seeds; not selected"
            continue
        mean = mean_std(e["selection_score"])[0]
        if math.isnan(mean):
            not_selectable[m] = f"{m}: no validation score; not selected"
            continue
        scores[m] = mean
    summary["not_selectable"] = not_selectable
    if scores:
        best = max(scores.values())
        tied = [m for m, s in scores.items() if s >= best - tol - 1e-12]
        selected = min(tied, key=simplicity_rank)
    else:
        selected = None
    summary["selected"] = selected
    summary["selection"] = {"scores": scores, "best_score_method": max(scores, key=lambda m: scores[m]) if scores else None,
                            "within_tolerance": sorted((m for m, s in scores.items()
                                                        if scores and s >= max(scores.values()) - tol - 1e-12),
                                                       key=simplicity_rank)}
    best_uni_val = uni_val.get(best_uni) if best_uni else None
    below = bool(selected and best_uni_val is not None and scores[selected] < best_uni_val)
    summary["fused_below_best_unimodal"] = below
    # paired differences and cost
    normal = methods.get("normal")
    normal_seconds = mean_std(normal["seconds"])[0] if normal else float("nan")
    for e in methods.values():
        e["paired"] = {}
        if normal:
            e["paired"]["vs_normal"] = _paired(e["test_fused"], e["seeds"], normal["test_fused"], normal["seeds"])
        if best_uni:
            u = unimodal[best_uni]
            e["paired"]["vs_best_unimodal"] = _paired(e["test_fused"], e["seeds"], u["test"], u["seeds"])
        mean_s = mean_std(e["seconds"])[0]
        e["relative_seconds"] = mean_s / normal_seconds if normal_seconds and normal_seconds > 0 else None
    summary["regime"] = _regime(summary)
    summary["verdict"] = _verdict_text(summary, scores, best_uni_val, tol)


def _regime(summary: dict) -> list[str]:
    """One line per modality: alone vs inside the Normal model (test accuracy, means over seeds)."""
    normal = summary["methods"].get("normal")
    k = summary.get("num_classes")
    chance = 1.0 / k if k else None
    lines = []
    for m, u in summary["unimodal"].items():
        alone = mean_std(u["test"])[0]
        inside = mean_std(normal["test_modality"].get(m, [])) [0] if normal else float("nan")
        text = f"{m}: {_pct(alone)} alone, {_pct(inside)} inside Normal"
        # near chance: within 10 % of the rest above chance, at most half of chance itself (so with
        # many classes a modality at several times chance is not called useless), at least 2 points
        if chance is not None and alone - chance < max(0.02, min(0.1 * (1 - chance), 0.5 * chance)):
            text += f" → {m} alone near chance ({_pct(chance)}): weak modality carries little; balancing cannot help it"
        elif not math.isnan(inside) and inside < alone - 0.05:
            text += f" → starved inside Normal ({_pct(alone - inside)} points below alone: the paper's regime)"
        elif not math.isnan(inside):
            text += " → learnt inside Normal about as well as alone"
        lines.append(text)
    return lines


def _verdict_text(summary: dict, scores: dict, best_uni_val, tol: float) -> str:
    sel = summary["selected"]
    if sel is None:
        return "No method finished every seed with a validation score: nothing selected."
    e = summary["methods"][sel]
    score, _ = mean_std(e["selection_score"])
    test, test_sd = mean_std(e["test_fused"])
    parts = [f"Use {sel}: best mean validation accuracy {_pct(score)}"
             + (" (cross-fitted)" if e["val_protocol"] == "cross-fit" else "")]
    best_m = summary["selection"]["best_score_method"]
    if best_m != sel:
        parts[0] += (f"; {best_m} scored {_pct(scores[best_m])}, within the {100 * tol:.1f}-point tie tolerance, "
                     f"so the simpler {sel} is kept")
    parts.append(f"test accuracy {_pct(test)} ± {_pct(test_sd)}")
    vs = e["paired"].get("vs_normal")
    if sel != "normal" and vs:
        parts.append(f"{_signed(vs['mean'])} ± {_pct(vs['std'])} vs Normal (paired over seeds)")
    vu = e["paired"].get("vs_best_unimodal")
    if vu and summary["best_unimodal"]:
        parts.append(f"{_signed(vu['mean'])} ± {_pct(vu['std'])} vs {summary['best_unimodal']} alone")
    text = "; ".join(parts) + "."
    if sel == "normal" and len(scores) > 1:
        text += f" No balancing method beat Normal on validation by more than {100 * tol:.1f} points."
    if not summary["best_unimodal"]:
        text += " No modality-alone run finished: the check against the best single modality was not made."
    n = summary.get("val_samples")
    if n and 1.0 / n > tol:
        text += (f" Note: the validation split holds {n} samples, so one sample moves a validation accuracy by "
                 f"{100 / n:.1f} points, more than the {100 * tol:.1f}-point tie tolerance: treat the selection "
                 "as tentative (more validation data, or more seeds, settle it).")
    if summary["fused_below_best_unimodal"]:
        uni = summary["best_unimodal"]
        text += f" WARNING: the selected fused model's validation accuracy ({_pct(score)}) is below {uni} alone " \
                f"({_pct(best_uni_val)})"
        if best_uni_val - score <= tol:
            text += f", by less than the tie tolerance: {uni} alone does as well on this data, with one modality."
        else:
            text += f": on this data a model of {uni} alone is the better choice."
    return text


def _signed(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def _cell(values: Sequence) -> str:
    m, s = mean_std([v for v in values if v is not None])
    return "-" if math.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The summary table (header, rows) in percent, mean ± std over seeds."""
    mods = summary["modalities"]
    header = ["method", "val (selection)", "test fused", "test macro-F1", "Δ vs Normal", "Δ vs best alone"]
    header += [f"{m} inside" for m in mods] + ["time vs Normal"]
    rows = []
    for name, e in summary["methods"].items():
        vn = e["paired"].get("vs_normal")
        vu = e["paired"].get("vs_best_unimodal")
        mark = " *" if name == summary["selected"] else ""
        row = [name + mark, _cell(e["selection_score"]) + (" (x-fit)" if e["val_protocol"] == "cross-fit" else ""),
               _cell(e["test_fused"]), _cell(e["test_macro_f1"]),
               "-" if name == "normal" or not vn else f"{_signed(vn['mean'])} ± {_pct(vn['std'])}",
               "-" if not vu else f"{_signed(vu['mean'])} ± {_pct(vu['std'])}"]
        row += [_cell(e["test_modality"].get(m, [])) for m in mods]
        rel = e.get("relative_seconds")
        row.append("-" if rel is None else f"{rel:.2f}x")
        rows.append(row)
    for m, u in summary["unimodal"].items():
        mark = " (best alone)" if m == summary["best_unimodal"] else ""
        rows.append([f"{m} alone{mark}", _cell(u["val"]), _cell(u["test"]), _cell(u["test_macro_f1"]), "-", "-"]
                    + ["-"] * len(mods) + ["-"])
    return header, rows


def format_table(summary: dict) -> str:
    """The table as aligned plain text (what ``ogmge compare`` prints)."""
    header, rows = table_rows(summary)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    return "\n".join(lines)


def summary_markdown(summary: dict) -> str:
    header, rows = table_rows(summary)
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"# ogmge compare: {summary['data']}", "",
             f"Seeds {seeds}; {summary['epochs']} epochs per run. Accuracies in percent, mean ± standard deviation "
             "over seeds. The **validation** column selects (cross-fitted for methods that fit on validation); "
             "test columns report the epoch the validation split chose; Δ are paired per seed on test accuracy; "
             "'inside' is each modality's accuracy inside the joint model (its per-modality logits). "
             "`*` marks the selected method.", "",
             f"**Verdict:** {summary['verdict']}", "", "**Regime:**", ""]
    lines += [f"- {r}" for r in summary["regime"]] + [""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if summary.get("not_selectable"):
        lines += ["", "Not selectable:", ""] + [f"- {why}" for why in summary["not_selectable"].values()]
    if summary.get("unavailable"):
        lines += ["", "Not available in this version:", ""] + [f"- {m}: {why}" for m, why in summary["unavailable"].items()]
    if summary.get("failed"):
        lines += ["", "Failed runs (rerun the same command to retry them):", ""]
        lines += [f"- {rel}: {why}" for rel, why in summary["failed"].items()]
    lines += ["", f"Tie rule: methods within {100 * summary['tie_tolerance']:.1f} points of the best mean validation "
              f"score go to the simplest, in the order {' < '.join(summary['simplicity_order'])}. "
              "Time: wall seconds per run relative to Normal (runs shared the machine)."]
    return "\n".join(lines) + "\n"


def write_summary(out: str | Path, summary: dict) -> tuple[Path, Path]:
    out = Path(out)
    _write_json(out / SUMMARY_JSON, _json_clean(summary))
    md = out / SUMMARY_MD
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(summary_markdown(summary))
    tmp.replace(md)
    return out / SUMMARY_JSON, md


def _json_clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    return value


def load_summary(out: str | Path) -> dict:
    return json.loads((Path(out) / SUMMARY_JSON).read_text())


__all__ = ["CROSS_FIT", "SIMPLICITY", "TIE_TOLERANCE", "PlannedRun", "compare", "format_table", "load_summary",
           "run_config", "run_state", "summarize", "summary_markdown", "write_summary"]
