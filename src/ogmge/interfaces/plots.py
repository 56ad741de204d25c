"""Comparison figures of one or more runs (``ogmge plot``; layer 5, interfaces).

One figure, :data:`FIGSIZE` inches at :data:`DPI` dots per inch, i.e.
**1500 x 1000 pixels** (:data:`PIXELS`), three panels:

1. fused accuracy per epoch (one line per run);
2. per-modality accuracy per epoch (one line per run x modality, from the
   run's per-modality estimator);
3. modulation coefficient k_u per optimiser step, x in epochs (one line per
   run x modality).

Accuracy curves are the **validation** split's by default: the test split
never selects anything (DESIGN §3), so it is evaluated once, at the end, and
has no per-epoch curve unless the run was trained with
``eval_test_every_epoch: true``. A run trained without a validation split
(``val_fraction: 0``; its last epoch is kept) falls back to its test curves,
which the trainer logs every epoch for such runs. ``split="test"`` asks for test
curves explicitly (runs that logged them). Titles and axis labels name the split
actually shown; a run shown on another split than the others says so in its legend.
Legends name each run (its config ``name``, else the run directory's name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ogmge.training.api import Run, load_run  # noqa: E402

FIGSIZE = (15.0, 10.0)
DPI = 100
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


SPLIT_NAMES = {"val": "validation", "test": "test"}


def _has(run: Run, split: str) -> bool:
    return any(row.get(f"{split}/acc") is not None for row in run.metrics)


def _without_validation(run: Run) -> bool:
    """Whether ``run`` was trained without a validation split (``val_fraction: 0``)."""
    results = run.results or {}
    return (results.get("selected_by") == "last epoch" or run.config.val_fraction == 0) and not _has(run, "val")


def _split_of(run: Run, prefer: str) -> str:
    """The split whose per-epoch curves are shown for ``run`` (see the module docstring)."""
    if prefer not in SPLIT_NAMES:
        raise ValueError(f"split must be 'val' or 'test', got {prefer!r}")
    if _has(run, prefer):
        return prefer
    if prefer == "val" and _without_validation(run) and _has(run, "test"):
        return "test"
    if prefer == "test":
        raise ValueError(
            f"run {run.run_dir} logged no per-epoch test metrics (it was trained with eval_test_every_epoch "
            f"false, the default: test is evaluated once, on the selected checkpoint); plot its validation "
            f"curves (split 'val') or train with eval_test_every_epoch: true"
        )
    raise ValueError(f"run {run.run_dir} logged no per-epoch validation or test accuracy to plot")


def _unique_names(runs: Sequence[Run]) -> list[str]:
    names = [r.name for r in runs]
    seen: dict[str, int] = {}
    out = []
    for n, r in zip(names, runs):
        if names.count(n) > 1:
            seen[n] = seen.get(n, 0) + 1
            out.append(f"{n} ({r.run_dir})")
        else:
            out.append(n)
    return out


def comparison_figure(runs: Sequence[Run | str | Path], *, split: str = "val", smooth: int = 1) -> Figure:
    """The figure for ``runs`` (Run objects or run directories); nothing is written."""
    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    if not loaded:
        raise ValueError("plot needs at least one run directory")
    names = _unique_names(loaded)
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax_fused = fig.add_subplot(2, 2, 1)
    ax_mod = fig.add_subplot(2, 2, 2)
    ax_k = fig.add_subplot(2, 1, 2)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    shown = [_split_of(run, split) for run in loaded]
    used = sorted(set(shown), key=["val", "test"].index)
    for i, (run, name, s) in enumerate(zip(loaded, names, shown)):
        color = colors[i % len(colors)]
        if len(used) > 1 and s != split:
            name = f"{name} [{SPLIT_NAMES[s]}]"
        rows = [r for r in run.metrics if r.get(f"{s}/acc") is not None]
        epochs = [r["epoch"] + 1 for r in rows]
        ax_fused.plot(epochs, [r[f"{s}/acc"] for r in rows], color=color, marker="o", ms=3, label=name)
        modalities = _modalities(run, s)
        for j, m in enumerate(modalities):
            key = f"{s}/modality_acc/{m}"
            pts = [(r["epoch"] + 1, r[key]) for r in rows if r.get(key) is not None]
            ax_mod.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linestyle=styles[j % len(styles)],
                        marker="o", ms=3, label=f"{name}: {m}")
        trace = run.trace()
        if trace:
            steps_per_epoch = _steps_per_epoch(trace)
            for j, m in enumerate(modalities):
                key = f"coeff/{m}"
                pts = [(t["epoch"] + (t["step"] - steps_per_epoch[t["epoch"]][0]) / steps_per_epoch[t["epoch"]][1],
                        t[key]) for t in trace if t.get(key) is not None]
                if not pts:
                    continue
                xs, ys = [p[0] for p in pts], _moving_average([p[1] for p in pts], smooth)
                ax_k.plot(xs, ys, color=color, linestyle=styles[j % len(styles)], lw=1, label=f"{name}: k {m}")
    what = " / ".join(SPLIT_NAMES[u] for u in used)
    ax_fused.set(title=f"fused accuracy ({what} split)", xlabel="epoch", ylabel=f"{what} accuracy")
    ax_mod.set(title=f"per-modality accuracy ({what} split)", xlabel="epoch", ylabel=f"{what} accuracy")
    ax_k.set(title="modulation coefficient k per step (1 = not slowed; Normal runs: measured, not applied)",
             xlabel="epoch", ylabel="k")
    for ax in (ax_fused, ax_mod, ax_k):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _modalities(run: Run, split: str) -> list[str]:
    names: list[str] = []
    prefix = f"{split}/modality_acc/"
    for row in run.metrics:
        for k in row:
            if k.startswith(prefix) and k[len(prefix):] not in names:
                names.append(k[len(prefix):])
    return names


def _steps_per_epoch(trace: list[dict]) -> dict[int, tuple[int, int]]:
    """``epoch -> (first global step, number of steps)`` as logged."""
    spans: dict[int, list[int]] = {}
    for t in trace:
        spans.setdefault(t["epoch"], []).append(t["step"])
    return {e: (min(s), max(s) - min(s) + 1) for e, s in spans.items()}


def _moving_average(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


#: File formats a figure is written in, by the suffix of its path (matplotlib's names).
FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def figure_format(out: str | Path) -> str:
    """The format named by ``out``'s suffix (``x.pdf`` -> ``pdf``); a ValueError for another."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"--out {out}: cannot tell the figure's format from the suffix "
                         f"{Path(out).suffix or '(none)'!r}; end the name in one of "
                         f"{', '.join('.' + f for f in FORMATS)}")
    return suffix


def save_figure(fig, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` in the format of its suffix (:func:`figure_format`), at :data:`DPI`;
    a ValueError naming the path when it cannot be written (a file in the way, read-only, ...)."""
    out = Path(out)
    fmt = figure_format(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format=fmt, dpi=DPI)
    except OSError as exc:
        raise ValueError(f"cannot write the figure to {out}: {exc.strerror or exc}") from None
    return out


def plot_runs(runs: Sequence[Run | str | Path], out: str | Path, *, split: str = "val", smooth: int = 1) -> Path:
    """Write the comparison figure of ``runs`` to ``out`` (:data:`PIXELS` pixels as PNG; the
    format is the suffix's: ``.pdf``, ``.svg``, ... -- another suffix is a ValueError)."""
    figure_format(out)  # before reading the runs
    fig = comparison_figure(runs, split=split, smooth=smooth)
    return save_figure(fig, out)
