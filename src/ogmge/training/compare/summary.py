"""The summary of a comparison: a pure function from its runs' results to a typed :class:`Summary`.

:func:`summarize_runs` takes the settings, each finished run's
:class:`~ogmge.training.results.RunResults` and the measured seconds; it reads no
file. :func:`summarize` reads them from a comparison directory. Figures are the
fused test accuracy and macro-F1 at the validation-selected epoch, as mean and
sample standard deviation (ddof 1; 0 for one seed) over seeds; paired differences
are per seed (same seed, same data split), then their mean and standard deviation.
The selection itself is :func:`ogmge.training.compare.select.select`.

A row is a candidate, a (method, prediction) pair: ``multitask`` (the method's default
rule) and ``multitask+stacked`` read the same runs, each with its own selected epoch
(the run's own rule from ``results.json``, another from its ``pairs``,
:meth:`~ogmge.training.results.RunResults.for_prediction`); a seed whose run did not
evaluate a pair's rule (written before pairs were) is missing from that row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..logs import METRICS, RESULTS, read_jsonl
from ..results import CROSS_FIT, ResultsError, RunResults
from .lookups import candidate_keys, fits_on_validation, pairs_of, split_candidate, tie_key
from .plan import PlannedRun, Settings, run_methods

TIMING = "timing.json"
#: What a modality alone says about the data (``RegimeLine.kind``): near chance; starved
#: inside Normal (more than 5 points below alone: the paper's regime); learnt about as well.
RegimeKind = Literal["near_chance", "starved", "as_well"]


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value); NaN when empty."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


@dataclass(frozen=True)
class Paired:
    """Per-seed differences ``a - b`` over the seeds both have, their mean and std."""

    seeds: list[int]
    per_seed: list[float]
    mean: float
    std: float


@dataclass(frozen=True)
class MethodEntry:
    """One method's runs, per seed (lists aligned with ``seeds``).

    ``selection_score``: the score selection uses per seed — ``val.acc`` (cross-fitted
    when ``val_protocol`` is ``cross-fit``), None for a method that fits on validation
    whose run was not cross-fitted. ``paired``: ``vs_normal`` / ``vs_best_unimodal`` on
    test accuracy. ``relative_seconds``: mean seconds over Normal's.
    """

    seeds: list[int]
    test_fused: list[float | None]
    test_macro_f1: list[float | None]
    val_fused: list[float | None]
    selection_score: list[float | None]
    val_protocol: str | list[str] | None
    test_modality: dict[str, list[float | None]]
    best_epoch: list[int | None]
    seconds: list[float]
    runs: list[str]
    paired: dict[str, Paired] = field(default_factory=dict)
    relative_seconds: float | None = None


@dataclass(frozen=True)
class UnimodalEntry:
    """One modality alone, per seed."""

    seeds: list[int]
    test: list[float | None]
    val: list[float | None]
    test_macro_f1: list[float | None]
    seconds: list[float]
    runs: list[str]


@dataclass(frozen=True)
class RegimeLine:
    """A modality alone vs inside the Normal model (test accuracy, means over seeds)."""

    modality: str
    alone: float
    inside: float
    chance: float | None
    kind: RegimeKind | None


@dataclass(frozen=True)
class Summary:
    """Everything a comparison measured; :func:`select` turns it into a :class:`Verdict`.

    ``methods`` in tie order (``normal`` first); ``best_unimodal``: the modality whose
    runs (all seeds) have the best mean validation accuracy, ``best_unimodal_val`` that
    mean. ``val_samples``: the fewest validation samples any run was scored on.
    ``jobs``/``threads_per_run``/``failed``/``unavailable``: how this execution went
    (``failed``: run key -> reason; ``unavailable``: method -> reason).
    """

    data: str | None
    epochs: int
    seeds: list[int]
    modalities: list[str]
    num_classes: int | None
    methods: dict[str, MethodEntry]
    unimodal: dict[str, UnimodalEntry]
    val_samples: int | None
    best_unimodal: str | None
    best_unimodal_val: float | None
    regime: list[RegimeLine]
    jobs: int | None = None
    threads_per_run: int | None = None
    failed: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: the shared schedule every run trained with (optimizer, lr, weight decay, batch size,
    #: epochs, early stopping): compare never switches to a method's own published schedule
    schedule: dict[str, Any] = field(default_factory=dict)
    #: ``{method: {option: value}}`` set for the comparison; other options at their defaults
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def complete(self, method: str) -> bool:
        """Whether ``method`` finished every seed."""
        return self.methods[method].seeds == self.seeds


def paired(a: Sequence, a_seeds: Sequence[int], b: Sequence, b_seeds: Sequence[int]) -> Paired:
    by_seed = dict(zip(b_seeds, b))
    pairs = [(s, x - by_seed[s]) for s, x in zip(a_seeds, a)
             if s in by_seed and x is not None and by_seed[s] is not None]
    mean, std = mean_std([d for _, d in pairs])
    return Paired([s for s, _ in pairs], [d for _, d in pairs], mean, std)


def regime_kind(alone: float, inside: float, chance: float | None) -> RegimeKind | None:
    """Near chance: within 10 % of the rest above chance, at most half of chance itself (so
    with many classes a modality at several times chance is not called useless), at least
    2 points; starved: more than 5 points below alone inside Normal."""
    if chance is not None and alone - chance < max(0.02, min(0.1 * (1 - chance), 0.5 * chance)):
        return "near_chance"
    if not math.isnan(inside) and inside < alone - 0.05:
        return "starved"
    if not math.isnan(inside):
        return "as_well"
    return None


def regime_lines(methods: Mapping[str, MethodEntry], unimodal: Mapping[str, UnimodalEntry],
                 num_classes: int | None) -> list[RegimeLine]:
    normal = methods.get("normal")
    chance = 1.0 / num_classes if num_classes else None
    lines = []
    for m, u in unimodal.items():
        alone = mean_std(u.test)[0]
        inside = mean_std(normal.test_modality.get(m, []))[0] if normal else float("nan")
        lines.append(RegimeLine(m, alone, inside, chance, regime_kind(alone, inside, chance)))
    return lines


def summarize_runs(settings: Settings, results: Mapping[str, RunResults], seconds: Mapping[str, float]) -> Summary:
    """The summary of the runs of ``settings`` whose ``results`` are given (by run key);
    ``seconds``: measured wall seconds per run key. Pure: reads no file."""
    seeds = list(settings.seeds)
    modalities: list[str] = []
    class_names: list[str] = []
    val_sizes: list[int] = []
    methods: dict[str, MethodEntry] = {}
    names = sorted(dict.fromkeys(k for entry in settings.methods for k in candidate_keys(entry)), key=tie_key)
    for method in names:
        run, rule = split_candidate(method)
        default = pairs_of(run)[0][1]
        rows = [(seed, PlannedRun(run, seed).key) for seed in seeds]
        # the method's own name: the run as it predicted; a pair: that rule, at its own selected epoch
        found = {key: results[key] if run == method else results[key].for_prediction(rule or default, default)
                 for _, key in rows if key in results}
        rows = [(seed, key) for seed, key in rows if found.get(key) is not None]
        if not rows:
            continue
        results_ = {key: res for key, res in found.items() if res is not None}
        protocols: set[str] = set()
        test_modality: dict[str, list[float | None]] = {}
        for _, key in rows:
            res = results_[key]
            modalities = modalities or list(res.modalities)
            class_names = class_names or list(res.class_names)
            protocols.add(res.val_protocol)
            if res.val_samples is not None:
                val_sizes.append(res.val_samples)
            for m in res.modalities:
                test_modality.setdefault(m, []).append(res.metric("test", f"modality_acc/{m}"))
        score = [None if fits_on_validation(method) and results_[k].val_protocol != CROSS_FIT
                 else results_[k].metric("val", "acc") for _, k in rows]
        methods[method] = MethodEntry(
            seeds=[s for s, _ in rows],
            test_fused=[results_[k].metric("test", "acc") for _, k in rows],
            test_macro_f1=[results_[k].metric("test", "macro_f1") for _, k in rows],
            val_fused=[results_[k].metric("val", "acc") for _, k in rows],
            selection_score=[None if v is None else float(v) for v in score],
            val_protocol=protocols.pop() if len(protocols) == 1 else sorted(protocols),
            test_modality=test_modality,
            best_epoch=[results_[k].best_epoch for _, k in rows],
            seconds=[seconds.get(k, 0.0) for _, k in rows],
            runs=[k for _, k in rows],
        )
    if not modalities:
        modalities = list(settings.modalities or [])
    unimodal: dict[str, UnimodalEntry] = {}
    for m in modalities:
        rows = [(seed, PlannedRun("normal", seed, modality=m).key) for seed in seeds]
        rows = [(seed, key) for seed, key in rows if key in results]
        if rows:
            unimodal[m] = UnimodalEntry(
                seeds=[s for s, _ in rows],
                test=[results[k].metric("test", "acc") for _, k in rows],
                val=[results[k].metric("val", "acc") for _, k in rows],
                test_macro_f1=[results[k].metric("test", "macro_f1") for _, k in rows],
                seconds=[seconds.get(k, 0.0) for _, k in rows],
                runs=[k for _, k in rows],
            )
    # the best modality alone, by mean validation accuracy over every seed
    uni_val = {m: mean_std(e.val)[0] for m, e in unimodal.items() if e.seeds == seeds}
    best_uni = max(uni_val, key=lambda m: (uni_val[m], -list(unimodal).index(m))) if uni_val else None
    normal = methods.get("normal")
    normal_seconds = mean_std(normal.seconds)[0] if normal else float("nan")
    for name, e in list(methods.items()):
        pairs: dict[str, Paired] = {}
        if normal:
            pairs["vs_normal"] = paired(e.test_fused, e.seeds, normal.test_fused, normal.seeds)
        if best_uni:
            u = unimodal[best_uni]
            pairs["vs_best_unimodal"] = paired(e.test_fused, e.seeds, u.test, u.seeds)
        mean_s = mean_std(e.seconds)[0]
        rel = mean_s / normal_seconds if normal_seconds and normal_seconds > 0 else None
        methods[name] = MethodEntry(**{**_fields(e), "paired": pairs, "relative_seconds": rel})
    num_classes = len(class_names) or None
    return Summary(
        data=settings.config.data or settings.config.dataset, epochs=settings.config.epochs, seeds=seeds,
        modalities=modalities, num_classes=num_classes, methods=methods, unimodal=unimodal,
        val_samples=min(val_sizes) if val_sizes else None, best_unimodal=best_uni,
        best_unimodal_val=uni_val.get(best_uni) if best_uni else None,
        regime=regime_lines(methods, unimodal, num_classes),
        schedule=shared_schedule(settings.config.replace(stopping=settings.stopping) if settings.stopping
                                 else settings.config),
        method_options={m: dict(o) for m, o in (settings.method_options or {}).items()},
    )


#: The settings of the shared schedule (``Summary.schedule``).
SCHEDULE_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "batch_size", "epochs", "patience", "stopping")


def shared_schedule(config) -> dict[str, Any]:
    """The schedule every run of a comparison shares (``SCHEDULE_KEYS`` of its configuration)."""
    return {k: getattr(config, k, None) for k in SCHEDULE_KEYS}


def _fields(entry) -> dict[str, Any]:
    return {k: getattr(entry, k) for k in entry.__dataclass_fields__}


# ------------------------------------------------------------------ reading a directory
def read_timing(out: Path) -> dict[str, float]:
    """``timing.json`` (run key -> seconds); empty when absent or unreadable (a cost, not a result)."""
    path = out / TIMING
    if not path.is_file():
        return {}
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError, TypeError):
        return {}


def run_seconds(out: Path, key: str, timing: Mapping[str, float]) -> float:
    """Measured seconds of one run: ``timing.json``, else the sum of its epochs' training seconds."""
    if key in timing:
        return timing[key]
    return float(sum(r.get("train/seconds") or 0.0 for r in read_jsonl(out / key / METRICS)))


def read_results(out: Path, settings: Settings) -> dict[str, RunResults]:
    """Every finished run's results in ``out`` (a corrupt file is a ResultsError naming it)."""
    keys = [PlannedRun(m, s).key for m in run_methods(settings.methods) for s in settings.seeds]
    mods = settings.modalities or sorted(p.name[5:] for p in out.glob("only-*") if p.is_dir())
    keys += [PlannedRun("normal", s, modality=m).key for m in mods for s in settings.seeds]
    found = {}
    for k in keys:
        path = out / k / RESULTS
        if not path.is_file():
            continue
        try:
            found[k] = RunResults.read(path)
        except ResultsError as exc:
            raise ResultsError(f"{exc}; delete {out / k} to train that run again (rerun the same command), "
                               "or restore the file") from None
    return found


def summarize(out: str | Path) -> Summary:
    """The summary of the comparison in directory ``out``."""
    out = Path(out)
    settings = Settings.load(out)
    results = read_results(out, settings)
    timing = read_timing(out)
    return summarize_runs(settings, results, {k: run_seconds(out, k, timing) for k in results})


def to_plain(value: Any) -> Any:
    """A summary's dataclasses as JSON-ready values (non-finite floats as None)."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


__all__ = ["TIMING", "MethodEntry", "Paired", "RegimeKind", "RegimeLine", "Summary", "UnimodalEntry", "mean_std",
           "paired", "read_results", "read_timing", "regime_kind", "regime_lines", "run_seconds", "summarize",
           "summarize_runs", "to_plain"]
