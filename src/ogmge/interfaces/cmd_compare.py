"""``ogmge compare``: every balancing method x seeds and each modality alone on one dataset,
one table and a verdict chosen on the validation split (``ogmge.training.compare``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config_cli import add_config_flags

#: Flags of ``ogmge train`` that compare sets per run itself: retired here with a message.
PER_RUN_FLAGS = {
    "method": "--methods (compare trains every method named there)",
    "modulation": "--methods (the paper's methods are normal, ogm, ogm_ge)",
    "opm": "--methods opm",
    "seed": "--seeds",
    "name": None,
}


def register(subparsers) -> argparse.ArgumentParser:
    from ogmge.training.config import METHODS

    p = subparsers.add_parser(
        "compare",
        help="train every balancing method x seeds and each modality alone; a table and a verdict",
        description="Train each balancing method (normal always included) and each modality alone, for "
        "several seeds, on one dataset; print a table (test accuracy at the epoch the validation split "
        "selected, mean ± std over seeds) and a verdict chosen on the validation split only. Rerunning "
        "the same command continues where it stopped.",
        conflict_handler="resolve",
    )
    add_config_flags(p)
    for action in p._actions:  # set per run by compare: refused with a message, not listed
        if action.dest in PER_RUN_FLAGS:
            action.help = argparse.SUPPRESS
        elif action.dest == "method_opt":  # per method in a comparison
            action.metavar = "METHOD.KEY=VALUE"
            action.help = ("an option of one compared method, e.g. ogm_ge.alpha=0.3 (repeatable; 'ogmge methods "
                           "NAME' lists them; with --tune the option is fixed and the others searched)")
    c = p.add_argument_group("comparison")
    c.add_argument("--methods", metavar="A,B",
                   help=f"balancing methods to compare (default: all of {','.join(METHODS)}); normal and each "
                   "modality alone are always included. A method stands for each of its prediction rules, "
                   "read from one run (multitask: rows multitask and multitask+stacked); METHOD+stacked names "
                   "one pair; anchored is multitask+stacked")
    c.add_argument("--seeds", default="0,1,2", metavar="0,1,2", help="training seeds (default 0,1,2)")
    c.add_argument("--jobs", type=int, metavar="N",
                   help="runs at once (default: one per CPU core, one thread each; on CUDA one per device)")
    c.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where runs execute: local processes (default) or Ray tasks on a cluster "
                   "(pip install \"ogmge[ray]\"; docs/training.md, 'On a cluster')")
    c.add_argument("--address", metavar="ADDR",
                   help="Ray cluster address (--backend ray; default: a local Ray runtime; 'auto': the "
                   "cluster this machine belongs to)")
    c.add_argument("--cpus-per-run", type=int, metavar="N",
                   help="CPUs per run: torch's intra-op threads in either backend, the Ray task's CPU request")
    c.add_argument("--gpus-per-run", type=float, default=0, metavar="G",
                   help="GPUs per Ray task (--backend ray; default 0)")
    c.add_argument("--out", metavar="DIR",
                   help="the comparison's directory (default: compare-<data file stem or dataset>)")
    c.add_argument("--tie-tolerance", type=float, default=0.5, metavar="POINTS",
                   help="validation accuracy points within which the simpler method wins (default 0.5)")
    c.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                   help="write DIR/comparison.png (default: yes)")
    t = p.add_argument_group("tuning (every candidate tuned on validation half A, compared on half B)")
    t.add_argument("--tune", type=int, metavar="TRIALS",
                   help="search TRIALS settings per candidate (Normal and each modality alone included) with "
                   "Optuna; the verdict compares the chosen settings on half B (docs/training.md)")
    t.add_argument("--tune-shared", choices=("schedule", "none"), default="schedule",
                   help="schedule: search optimizer, lr and weight decay for every candidate (default); "
                   "none: keep the configuration's and search only the methods' own options")
    t.add_argument("--cv", type=int, metavar="K",
                   help="K group-aware folds of train + validation as the objective (0: halves of the validation "
                   "split; default: 5 folds when the validation split holds fewer than 200 samples)")
    t.add_argument("--storage", metavar="URL",
                   help="an Optuna RDB storage (postgresql://..., mysql+pymysql://...; default: DIR/tuning.db)")
    t.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="stop settings clearly behind on their per-epoch half-A accuracy (default median)")
    return p


def parse_list(text: str | None, what: str, cast=str) -> list | None:
    """``"a,b"`` -> ``[cast("a"), cast("b")]``; None stays None.

    >>> parse_list("0, 1,2", "seeds", int)
    [0, 1, 2]
    """
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} needs a comma-separated list, got {text!r}")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ValueError(f"--{what} must be a comma-separated list of integers, got {text!r}") from None


def default_out(config) -> Path:
    stem = Path(config.data).stem if config.data else config.dataset
    return Path(f"compare-{stem}")


def run(args) -> int:
    from ogmge.training.compare import CompareInterrupted

    from .compare_report import compare
    from .config_cli import config_from_args, load_plugins, parse_compare_method_opts

    for flag, instead in PER_RUN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            hint = f"; use {instead}" if instead else ""
            raise ValueError(f"--{flag} is set per run by ogmge compare{hint}")
    out = args.out
    args.out = None  # the comparison's directory, not a run directory
    load_plugins(args)
    method_options = parse_compare_method_opts(getattr(args, "method_opt", None) or [])
    args.method_opt = []  # per method here, not the one run's --method-opt of train
    config = config_from_args(args)
    out = Path(out) if out else default_out(config)
    try:
        summary = compare(
            config,
            out=out,
            methods=parse_list(args.methods, "methods"),
            seeds=parse_list(args.seeds, "seeds", int) or [],
            jobs=args.jobs,
            backend=args.backend,
            address=args.address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            tie_tolerance=args.tie_tolerance / 100.0,
            progress=config.progress,
            tune=args.tune,
            method_options=method_options or None,
            **({"tune_shared": args.tune_shared, "cv": args.cv, "storage": args.storage, "pruner": args.pruner}
               if args.tune is not None else {}),
        )
    except CompareInterrupted as stop:
        return interrupted(stop, "compare")
    if summary.get("tuned"):
        print()
        print((out / "summary.md").read_text())
        print(f"summary: {out / 'summary.md'}, {out / 'summary.json'}; trials: {out / 'tuning.json'}")
        return 1 if summary.get("failed") else 0
    return report(summary, out, plot=args.plot)


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def interrupted(stop: BaseException, command: str) -> int:
    """One line on stderr (what was kept, how to continue); the exit status of a Ctrl-C."""
    print(f"\nogmge {command}: {stop}", file=sys.stderr)
    return INTERRUPTED


def report(summary: dict, out: Path, *, plot: bool = True) -> int:
    """Print the table, the regime, the verdict and the outputs' paths; write the plot."""
    from .compare_report import format_table

    print()
    print(f"test accuracy (%) at the validation-selected epoch, mean ± std over seeds {summary['seeds']}; "
          "selection on the validation column:")
    print(format_table(summary))
    print()
    print("regime:  " + "\n         ".join(summary["regime"]))
    print(f"verdict: {summary['verdict']}")
    for why in summary.get("not_selectable", {}).values():
        print(f"note:    {why}")
    for method, why in summary.get("unavailable", {}).items():
        print(f"note:    {method} is not available in this version ({why})")
    if summary.get("failed"):
        print(f"FAILED:  {len(summary['failed'])} run(s): " + "; ".join(f"{k} ({v})" for k, v in summary["failed"].items()))
        print("         rerun the same command to retry them (finished runs are kept)")
    print()
    print(f"summary: {out / 'summary.md'}, {out / 'summary.json'}")
    if plot:
        from .compare_plot import plot_comparison

        print(f"plot:    {plot_comparison(out, summary)}")
    return 1 if summary.get("failed") else 0
