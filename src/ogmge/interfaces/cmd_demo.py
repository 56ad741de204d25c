"""``ogmge demo``: ``ogmge compare`` on the built-in data with a fixed subset.

The methods and seeds are the ``demo`` preset's ``compare`` section (``src/ogmge/configs/demo.yaml``:
Normal, OGM-GE (the paper) and ``multitask+stacked`` (``multitask``, MMPareto's uniform multitask
baseline, with the ``stacked`` prediction, this project's head combiner; formerly ``anchored``), seeds 0, 1, 2), with
each modality alone and the preset's settings (CPU-scale: small encoders, 12 epochs): 15 runs,
two at a time on two CPU cores, one thread each. A ``--config`` without such a section takes
the demo preset's.
Prints the table (test accuracy at the epoch the validation split selected, mean
± std over the seeds) and the verdict chosen on validation, and writes
``DIR/summary.md``, ``DIR/summary.json`` and ``DIR/comparison.png``. Rerunning
continues an interrupted demo (finished runs are kept); ``--overwrite`` starts again, deleting
only a directory the demo marked as its own (``ogmge-demo.json``), never a comparison of yours.
The demo writes the marker first, before anything else, when ``--out`` is new or empty, so
that a demo interrupted by Ctrl-C or killed is its own as well; in a directory that already
holds something else it marks only once its comparison has finished there.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from .config_cli import _Retired

#: The preset whose ``compare`` section holds the demo's methods and seeds.
DEMO_PRESET = "demo"
#: Subdirectories of the demo before it became a comparison (removed by --overwrite).
OLD_LAYOUT = ("normal", "ogm_ge", "audio_only", "visual_only")
#: The file that marks a directory as the demo's own: ``--overwrite`` deletes only such a one.
MARKER = "ogmge-demo.json"


def _check_writable(out: Path) -> None:
    """Create ``out`` (if new) and write a file in it; a ValueError naming ``out`` when it cannot."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write the demo directory --out {out}: {exc.strerror or exc}") from None


def _is_new_or_empty(out: Path) -> bool:
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def _mark(out: Path) -> None:
    """Create ``out`` and write the demo's marker; a ValueError naming ``out`` when it cannot."""
    from ogmge.io_utils import atomic_write_text

    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / MARKER, '{"format": "ogmge-demo", "version": 1}\n')
    except OSError as exc:
        raise ValueError(f"cannot write the demo directory --out {out}: {exc.strerror or exc}") from None


def demo_subset(config: str | Path = DEMO_PRESET) -> tuple[list[str], list[int]]:
    """The methods and seeds of ``config``'s ``compare`` section, each else the demo preset's."""
    from ogmge.training.config import comparison_section

    mine, preset = comparison_section(config), comparison_section(DEMO_PRESET)
    return list(mine.get("methods") or preset["methods"]), list(mine.get("seeds") or preset["seeds"])


def register(subparsers) -> argparse.ArgumentParser:
    methods, seeds = demo_subset()
    p = subparsers.add_parser(
        "demo",
        help=f"compare {', '.join(methods)} ({len(seeds)} seeds) and each modality alone on the built-in data "
        "(under 3 minutes on 2 CPU cores)",
        description=f"ogmge compare on the built-in data with a fixed subset (the {DEMO_PRESET} preset's "
        f"compare section): {', '.join(methods)} and each modality alone, seeds {','.join(map(str, seeds))}; "
        "prints the table and the verdict chosen on the validation split, and writes the plot.",
    )
    p.add_argument("--out", default="ogmge-demo", metavar="DIR", help="where runs and the plot go (default ./ogmge-demo)")
    p.add_argument("--config", default=DEMO_PRESET, metavar="PRESET_OR_YAML",
                   help="settings (default: the demo preset; its compare section's methods and seeds, where "
                   "it has one)")
    p.add_argument("--seeds", default=None, metavar="0,1,2",
                   help=f"training seeds (default {','.join(map(str, seeds))})")
    p.add_argument("--seed", type=int, help="one training seed (same as --seeds N)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the preset's)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda (default: the preset's)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs trained at once, one process and one thread each (default: one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="delete the runs of an earlier demo in --out first")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="overall progress bar")
    # retired flags: accepted, with a message
    p.add_argument("--unimodal", action=argparse.BooleanOptionalAction, default=None, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--imbalance", nargs="?", action=_Retired, help=argparse.SUPPRESS)  # built-in data v1's knob
    return p


def run(args) -> int:
    from ogmge.training import TrainConfig
    from ogmge.training.compare import SETTINGS, CompareInterrupted

    from .cmd_compare import interrupted, parse_list, report
    from .compare_report import compare

    if args.unimodal is False:
        raise ValueError("--no-unimodal is retired: the demo always trains each modality alone (the verdict "
                         "compares the fused models against them); for other subsets use ogmge compare")
    if args.unimodal:
        print("note: --unimodal is retired (each modality alone is always trained)")
    if args.budget is not None:
        print("note: --budget is retired (the demo's fixed subset is sized to finish within 3 minutes on 2 CPU "
              "cores); ignored")
    if args.seed is not None and args.seeds is not None:
        raise ValueError(f"give one of --seed ({args.seed}) and --seeds ({args.seeds})")
    methods, preset_seeds = demo_subset(args.config)
    if args.seed is not None:
        seeds = [args.seed]
    else:
        seeds = (parse_list(args.seeds, "seeds", int) or []) if args.seeds else preset_seeds
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory; choose a directory for the demo")
    if args.overwrite and out.exists():
        old_layout = not (out / SETTINGS).is_file() and any((out / d).is_dir() for d in OLD_LAYOUT)
        if not ((out / MARKER).is_file() or old_layout):
            what = (f"holds a comparison ({SETTINGS}) that the demo did not mark as its own (no {MARKER})"
                    if (out / SETTINGS).is_file() else f"is not a demo directory (no {MARKER})")
            raise ValueError(f"--overwrite: {out} {what}; not deleting it: delete it yourself, or choose "
                             "another --out (a demo marks a new or empty directory when it starts, any other "
                             "when it finishes there; rerun it without --overwrite to finish an interrupted "
                             "one)")
        shutil.rmtree(out)
    elif not (out / SETTINGS).is_file() and any((out / d / "last.pt").is_file() for d in OLD_LAYOUT):
        raise ValueError(f"{out} holds a demo of an earlier version; use --overwrite or another --out")
    base = TrainConfig.load(args.config)
    changes: dict = {}
    for key in ("epochs", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    base = base.replace(**changes)
    if _is_new_or_empty(out) or (out / MARKER).is_file():
        _mark(out)  # before anything else: an interrupted or killed demo is still the demo's own
    else:
        _check_writable(out)
    t0 = time.perf_counter()
    print(f"ogmge demo: built-in data, methods {', '.join(methods)} and each modality alone, seeds "
          f"{seeds}, {base.epochs} epochs, fusion {base.fusion}; outputs in {out}/", flush=True)
    try:
        summary = compare(base, out=out, methods=methods, seeds=seeds, jobs=args.jobs,
                          progress=args.progress)
    except CompareInterrupted as stop:
        return interrupted(stop, "demo")
    _mark(out)  # the demo's own settings ran here: a demo directory (if not marked when it started)
    code = report(summary, out)
    print(f"note:    the regime above is measured at this schedule ({base.resolved_optimizer('generic')} at lr "
          f"{base.lr:g}, {base.epochs} epochs); it depends on it: another optimiser or learning rate may starve a "
          "modality less. `ogmge compare --tune 8` tunes every method's and Normal's schedule and compares them.")
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return code
