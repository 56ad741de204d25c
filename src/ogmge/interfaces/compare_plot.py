"""The figure of a comparison (``DIR/comparison.png``, written by ``ogmge compare``).

Three panels, :data:`FIGSIZE` inches at :data:`DPI` dpi (1500 x 1000 pixels):

1. fused test accuracy per method (bar: mean over seeds; dots: each seed), then
   each modality alone (hatched), the selected method outlined;
2. per-modality test accuracy inside each joint model (from its per-modality
   logits) beside each modality alone;
3. validation accuracy per epoch (mean over seeds) of every method and of each
   modality alone: the split that selected each run's epoch (the test split has no
   per-epoch curve; it is evaluated once, at the end).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FIGSIZE = (15.0, 10.0)
DPI = 100
FILENAME = "comparison.png"


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else math.nan


def _curve_key(name: str) -> str:
    """The metrics-row key of a candidate's validation accuracy: ``val/acc``, or for a pair
    ``method+<rule>`` read from its method's runs ``pairs/<rule>/val/acc``."""
    from ogmge.training.compare.lookups import split_candidate

    method, rule = split_candidate(name)
    return "val/acc" if method == name or rule is None else f"pairs/{rule}/val/acc"


def _val_curve(out: Path, runs: list[str], key: str = "val/acc") -> tuple[list[int], list[float]]:
    """Mean validation accuracy (the rows' ``key``) per epoch over ``runs`` (epochs every run reached)."""
    per_run = []
    for rel in runs:
        path = out / rel / "metrics.jsonl"
        rows = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get(key) is not None:
                    rows[int(r["epoch"])] = float(r[key])
        per_run.append(rows)
    if not per_run:
        return [], []
    epochs = sorted(set.intersection(*(set(r) for r in per_run))) if per_run else []
    return [e + 1 for e in epochs], [sum(r[e] for r in per_run) / len(per_run) for e in epochs]


def comparison_figure(out: str | Path, summary: dict | None = None) -> Figure:
    """The figure of the comparison in ``out`` (its ``summary.json`` unless ``summary`` is given)."""
    out = Path(out)
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    methods, unimodal = summary["methods"], summary["unimodal"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax_bar = fig.add_subplot(2, 2, 1)
    ax_mod = fig.add_subplot(2, 2, 2)
    ax_val = fig.add_subplot(2, 1, 2)

    labels: list[str] = []
    means: list[float] = []
    points: list[list] = []
    styles: list[tuple[str, str | None, bool]] = []
    for i, (name, e) in enumerate(methods.items()):
        labels.append(name)
        means.append(_mean(e["test_fused"]))
        points.append(e["test_fused"])
        styles.append((colors[i % len(colors)], None, name == summary.get("selected")))
    for m, u in unimodal.items():
        labels.append(f"{m} alone")
        means.append(_mean(u["test"]))
        points.append(u["test"])
        styles.append(("lightgray", "//", False))
    xs = range(len(labels))
    for x, mean, pts, (color, hatch, chosen) in zip(xs, means, points, styles):
        ax_bar.bar(x, 100 * mean, color=color, hatch=hatch, alpha=0.8,
                   edgecolor="black" if chosen else "gray", linewidth=2.5 if chosen else 0.5)
        clean = [100 * p for p in pts if p is not None]
        ax_bar.scatter([x] * len(clean), clean, color="black", s=14, zorder=3)
    ax_bar.set_xticks(list(xs), labels, rotation=30, ha="right")
    lo = min((100 * p for pts in points for p in pts if p is not None), default=0.0)
    ax_bar.set_ylim(max(0.0, lo - 10), 100)
    ax_bar.set(title=f"fused test accuracy\n(bars: mean over seeds {summary['seeds']}; dots: seeds; "
               f"outlined: selected on validation)", ylabel="test accuracy (%)")

    mods = summary.get("modalities") or list(unimodal)
    groups = list(methods) + ["alone"]
    width = 0.8 / max(len(mods), 1)
    for k, m in enumerate(mods):
        vals = [100 * _mean(e["test_modality"].get(m, [])) for e in methods.values()]
        vals.append(100 * _mean(unimodal[m]["test"]) if m in unimodal else math.nan)
        ax_mod.bar([g + (k - (len(mods) - 1) / 2) * width for g in range(len(groups))], vals, width=width,
                   label=m, color=colors[k % len(colors)], alpha=0.8)
    ax_mod.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax_mod.set(title="per-modality test accuracy\n(inside each joint model, and each modality alone)",
               ylabel="test accuracy (%)")
    ax_mod.legend(fontsize=8)

    for i, (name, e) in enumerate(methods.items()):
        ep, acc = _val_curve(out, e["runs"], _curve_key(name))
        ax_val.plot(ep, [100 * a for a in acc], color=colors[i % len(colors)], marker="o", ms=3,
                    lw=2.5 if name == summary.get("selected") else 1.2, label=name)
    for j, (m, u) in enumerate(unimodal.items()):
        ep, acc = _val_curve(out, u["runs"])
        ax_val.plot(ep, [100 * a for a in acc], color="gray", linestyle=["--", ":", "-."][j % 3], label=f"{m} alone")
    ax_val.set(title="validation accuracy per epoch (mean over seeds; the split that selects)", xlabel="epoch",
               ylabel="validation accuracy (%)")
    for ax in (ax_bar, ax_mod, ax_val):
        ax.grid(alpha=0.3)
    if ax_val.get_lines():
        ax_val.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_comparison(out: str | Path, summary: dict | None = None) -> Path:
    """Write ``out/comparison.png`` and return its path."""
    out = Path(out)
    fig = comparison_figure(out, summary)
    path = out / FILENAME
    fig.savefig(path, format="png", dpi=DPI)
    return path
