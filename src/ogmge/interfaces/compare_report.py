"""The comparison's report: ``ogmge.compare()``, its table, Markdown, regime and verdict text.

``compare(config, out=DIR, methods=..., seeds=...)`` runs
:func:`ogmge.training.compare.run_comparison` and writes ``DIR/summary.json``
(:func:`summary_document`: the typed summary and verdict as JSON, plus the
``regime`` and ``verdict`` text) and ``DIR/summary.md``. The text functions take a
:class:`~ogmge.training.compare.Summary` and a
:class:`~ogmge.training.compare.Verdict` and compute no statistics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ogmge.io_utils import atomic_write_text
from ogmge.training.compare import (
    DEFAULT_SEEDS,
    TIE_TOLERANCE,
    Executor,
    RegimeLine,
    Summary,
    Verdict,
    run_comparison,
)
from ogmge.training.compare.summary import mean_std, to_plain
from ogmge.training.config import TrainConfig

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def _cell(values: Sequence) -> str:
    m, s = mean_std([v for v in values if v is not None])
    return "-" if math.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f}"


def regime_text(line: RegimeLine) -> str:
    """``audio: 60.0 alone, 55.0 inside Normal → ...``."""
    m = line.modality
    text = f"{m}: {_pct(line.alone)} alone, {_pct(line.inside)} inside Normal"
    if line.kind == "near_chance":
        text += (f" → {m} alone near chance ({_pct(line.chance)}): weak modality carries little; balancing "
                 "cannot help it")
    elif line.kind == "starved":
        text += f" → starved inside Normal ({_pct(line.alone - line.inside)} points below alone: the paper's regime)"
    elif line.kind == "as_well":
        text += " → learnt inside Normal about as well as alone"
    return text


def verdict_text(summary: Summary, verdict: Verdict) -> str:
    """The verdict as one paragraph."""
    sel, tol, scores = verdict.selected, verdict.tolerance, verdict.scores
    if sel is None:
        return "No method finished every seed with a validation score: nothing selected."
    e = summary.methods[sel]
    score = scores[sel]
    test, test_sd = mean_std(e.test_fused)
    parts = [f"Use {sel}: best mean validation accuracy {_pct(score)}"
             + (" (cross-fitted)" if e.val_protocol == "cross-fit" else "")]
    best_m = verdict.best_score_method
    if best_m is not None and best_m != sel:
        parts[0] += (f"; {best_m} scored {_pct(scores[best_m])}, within the {100 * tol:.1f}-point tie tolerance, "
                     f"so the simpler {sel} is kept")
    parts.append(f"test accuracy {_pct(test)} ± {_pct(test_sd)}")
    vs = e.paired.get("vs_normal")
    if sel != "normal" and vs:
        parts.append(f"{_signed(vs.mean)} ± {_pct(vs.std)} vs Normal (paired over seeds)")
    vu = e.paired.get("vs_best_unimodal")
    if vu and summary.best_unimodal:
        parts.append(f"{_signed(vu.mean)} ± {_pct(vu.std)} vs {summary.best_unimodal} alone")
    text = "; ".join(parts) + "."
    if sel == "normal" and len(scores) > 1:
        text += f" No balancing method beat Normal on validation by more than {100 * tol:.1f} points."
    if not summary.best_unimodal:
        text += " No modality-alone run finished: the check against the best single modality was not made."
    n = summary.val_samples
    if n and 1.0 / n > tol:
        text += (f" Note: the validation split holds {n} samples, so one sample moves a validation accuracy by "
                 f"{100 / n:.1f} points, more than the {100 * tol:.1f}-point tie tolerance: treat the selection "
                 "as tentative (more validation data, or more seeds, settle it).")
    if verdict.fused_below_best_unimodal and summary.best_unimodal_val is not None:
        uni, uni_val = summary.best_unimodal, summary.best_unimodal_val
        text += (f" WARNING: the selected fused model's validation accuracy ({_pct(score)}) is below {uni} alone "
                 f"({_pct(uni_val)})")
        if uni_val - score <= tol:
            text += f", by less than the tie tolerance: {uni} alone does as well on this data, with one modality."
        else:
            text += f": on this data a model of {uni} alone is the better choice."
    return text


def summary_document(summary: Summary, verdict: Verdict) -> dict[str, Any]:
    """``summary.json``: its documented keys (docs/training.md), JSON-ready."""
    doc: dict[str, Any] = {
        "seeds": summary.seeds,
        "methods": {m: to_plain(e) for m, e in summary.methods.items()},
        "unimodal": {m: to_plain(e) for m, e in summary.unimodal.items()},
        "modalities": summary.modalities,
        "num_classes": summary.num_classes,
        "data": summary.data,
        "epochs": summary.epochs,
        "tie_tolerance": verdict.tolerance,
        "val_samples": summary.val_samples,
        "simplicity_order": verdict.tie_order,
        "best_unimodal": summary.best_unimodal,
        "not_selectable": verdict.not_selectable,
        "selected": verdict.selected,
        "selection": {"scores": verdict.scores, "best_score_method": verdict.best_score_method,
                      "within_tolerance": verdict.within_tolerance},
        "fused_below_best_unimodal": verdict.fused_below_best_unimodal,
        "regime": [regime_text(r) for r in summary.regime],
        "verdict": verdict_text(summary, verdict),
        "jobs": summary.jobs,
        "threads_per_run": summary.threads_per_run,
        "failed": summary.failed,
        "unavailable": summary.unavailable,
        "schedule": summary.schedule,
        "method_options": summary.method_options,
    }
    return to_plain(doc)


def schedule_text(doc: dict) -> str:
    """One paragraph: the shared schedule, and which method options differ from their defaults."""
    sch = doc.get("schedule") or {}
    parts = [f"{k.replace('_', ' ')} {sch[k]}" for k in ("optimizer", "lr", "weight_decay", "batch_size", "epochs",
                                                          "patience", "stopping") if k in sch]
    text = ("Every run trains with the same schedule (" + ", ".join(parts) + "); where a method's authors "
            "published another schedule (epochs, learning rate, optimizer), compare keeps the shared one so that "
            "methods differ only in what they are. ") if parts else ""
    opts = doc.get("method_options") or {}
    if opts:
        given = "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in o.items()) for m, o in opts.items())
        text += f"Method options set for this comparison: {given}; every other option at its declared default."
    else:
        text += "Each method runs at its declared defaults (`ogmge methods NAME` lists them with their sources)."
    return text


def pairs_text(doc: dict) -> str:
    """One sentence on the (method, prediction) rows, when the table has any (else empty)."""
    pairs = [m for m in doc["methods"] if "+" in m]
    if not pairs:
        return ""
    return (f" {', '.join(pairs)}: the same runs as the method before the `+`, predicting with that rule (the "
            "stacked pool: the heads' log-probabilities weighted by a fit on validation, cross-fitted for the "
            "selection), each at the epoch its own validation score selected; one training serves both rows.")


def table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    """The summary table (header, rows) of a ``summary.json`` document, in percent,
    mean ± std over seeds."""
    mods = doc["modalities"]
    header = ["method", "val (selection)", "test fused", "test macro-F1", "Δ vs Normal", "Δ vs best alone"]
    header += [f"{m} inside" for m in mods] + ["time vs Normal"]
    rows = []
    for name, e in doc["methods"].items():
        vn = e["paired"].get("vs_normal")
        vu = e["paired"].get("vs_best_unimodal")
        mark = " *" if name == doc["selected"] else ""
        row = [name + mark, _cell(e["selection_score"]) + (" (x-fit)" if e["val_protocol"] == "cross-fit" else ""),
               _cell(e["test_fused"]), _cell(e["test_macro_f1"]),
               "-" if name == "normal" or not vn else f"{_signed(vn['mean'])} ± {_pct(vn['std'])}",
               "-" if not vu else f"{_signed(vu['mean'])} ± {_pct(vu['std'])}"]
        row += [_cell(e["test_modality"].get(m, [])) for m in mods]
        rel = e.get("relative_seconds")
        row.append("-" if rel is None else f"{rel:.2f}x")
        rows.append(row)
    for m, u in doc["unimodal"].items():
        mark = " (best alone)" if m == doc["best_unimodal"] else ""
        rows.append([f"{m} alone{mark}", _cell(u["val"]), _cell(u["test"]), _cell(u["test_macro_f1"]), "-", "-"]
                    + ["-"] * len(mods) + ["-"])
    return header, rows


def format_table(doc: dict) -> str:
    """The table as aligned plain text (what ``ogmge compare`` prints)."""
    header, rows = table_rows(doc)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    return "\n".join(lines)


def summary_markdown(doc: dict) -> str:
    """``summary.md`` of a ``summary.json`` document."""
    header, rows = table_rows(doc)
    seeds = ", ".join(str(s) for s in doc["seeds"])
    lines = [f"# ogmge compare: {doc['data']}", "",
             f"Seeds {seeds}; {doc['epochs']} epochs per run. Accuracies in percent, mean ± standard deviation "
             "over seeds. The **validation** column selects (cross-fitted for methods that fit on validation); "
             "test columns report the epoch the validation split chose; Δ are paired per seed on test accuracy; "
             "'inside' is each modality's accuracy inside the joint model (its per-modality logits). "
             "`*` marks the selected method." + pairs_text(doc), "", schedule_text(doc), "",
             f"**Verdict:** {doc['verdict']}", "", "**Regime:**", ""]
    lines += [f"- {r}" for r in doc["regime"]] + [""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if doc.get("not_selectable"):
        lines += ["", "Not selectable:", ""] + [f"- {why}" for why in doc["not_selectable"].values()]
    if doc.get("unavailable"):
        lines += ["", "Not available in this version:", ""] + [f"- {m}: {why}" for m, why in doc["unavailable"].items()]
    if doc.get("failed"):
        lines += ["", "Failed runs (rerun the same command to retry them):", ""]
        lines += [f"- {rel}: {why}" for rel, why in doc["failed"].items()]
    lines += ["", f"Tie rule: methods within {100 * doc['tie_tolerance']:.1f} points of the best mean validation "
              f"score go to the simplest, in the order {' < '.join(doc['simplicity_order'])}. "
              "Time: wall seconds per run relative to Normal (runs shared the machine)."]
    return "\n".join(lines) + "\n"


def write_summary(out: str | Path, doc: dict) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` (atomically)."""
    out = Path(out)
    js = atomic_write_text(out / SUMMARY_JSON, json.dumps(doc, indent=2) + "\n")
    md = atomic_write_text(out / SUMMARY_MD, summary_markdown(doc))
    return js, md


def load_summary(out: str | Path) -> dict:
    return json.loads((Path(out) / SUMMARY_JSON).read_text())


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
    executor: Executor | None = None,
    tune: int | None = None,
    tune_shared: str = "schedule",
    cv: int | None = None,
    storage: str | None = None,
    pruner: str = "median",
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: int | None = None,
    gpus_per_run: float = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> dict:
    """Train ``methods`` x ``seeds`` and each modality alone on ``config``'s data, write
    ``out/summary.json`` and ``out/summary.md``, and return the summary (docs/training.md).

    ``config``: a TrainConfig, a mapping of settings, a preset or YAML file, or None
    (defaults); ``settings`` override it (``data="my.npz"`` implies ``dataset="byo"``).
    ``methods`` defaults to every method; ``normal`` is always included. ``jobs``: runs at
    once (default: one per CPU core with one thread each, or one per CUDA device).
    ``tie_tolerance``: fraction of accuracy within which the simpler method wins (0.005).
    ``executor``: how runs execute (default: local processes); ``backend="ray"`` runs each
    as a Ray task on the cluster at ``address`` (None: a local Ray runtime; ``pip install
    "ogmge[ray]"``) with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each;
    ``cpus_per_run`` also sets the local backend's torch threads per run.
    ``method_options``: ``{method: {option: value}}`` for that method's runs (each
    checked against the method's declared options; ``--method-opt METHOD.KEY=VALUE``);
    under ``tune`` those options are fixed and the others searched.
    ``tune=TRIALS``: every candidate tuned with Optuna on validation half A and compared
    on half B
    (``tune_shared``: ``"schedule"`` or ``"none"``; ``cv``: folds, 0 for halves, None: by
    the validation size; ``storage``: an Optuna RDB URL; ``pruner``: ``median``,
    ``halving`` or ``none``; ``ogmge.training.compare.tuning``). The figure:
    ``ogmge.interfaces.compare_plot.plot_comparison(out)``.

    Examples
    --------
    >>> import ogmge
    >>> ogmge.compare.__module__
    'ogmge.interfaces.compare_report'
    >>> summary = ogmge.compare(data="my.npz", out="compare-my", methods=["ogm_ge", "opm"])  # doctest: +SKIP
    >>> summary["selected"], summary["fused_below_best_unimodal"]  # doctest: +SKIP
    ('ogm_ge', False)
    """
    if tune is not None:  # every candidate tuned on half A, compared on half B (compare.tuning)
        from ogmge.training.compare.runner import backend_executor
        from ogmge.training.compare.tuning import run_tuned

        # under Ray the trials and the chosen settings' runs are Ray tasks
        executor = backend_executor(executor, backend, address, cpus_per_run, gpus_per_run)
        return run_tuned(config, out=out, methods=methods, seeds=seeds, trials=tune, tune_shared=tune_shared, cv=cv,
                         storage=storage, pruner=pruner, tie_tolerance=tie_tolerance, jobs=jobs, executor=executor,
                         echo=echo, method_options=method_options, **settings)
    if (Path(out) / "tune.yaml").is_file():
        raise ValueError(f"{out} holds a tuned comparison (tune.yaml): rerun it with --tune, or use another --out")
    summary, verdict = run_comparison(config, out=out, methods=methods, seeds=seeds, jobs=jobs,
                                      tie_tolerance=tie_tolerance, echo=echo, progress=progress,
                                      executor=executor, backend=backend, address=address,
                                      cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                                      method_options=method_options, **settings)
    doc = summary_document(summary, verdict)
    write_summary(out, doc)
    return doc


def report_of(out: str | Path, tie_tolerance: float = TIE_TOLERANCE) -> dict:
    """The ``summary.json`` document of the comparison in ``out`` as its runs stand (no training)."""
    from ogmge.training.compare import select, summarize

    summary = summarize(out)
    return summary_document(summary, select(summary, tie_tolerance))


__all__ = ["SUMMARY_JSON", "SUMMARY_MD", "compare", "format_table", "load_summary", "regime_text", "report_of",
           "pairs_text", "schedule_text", "summary_document", "summary_markdown", "table_rows", "verdict_text", "write_summary"]
