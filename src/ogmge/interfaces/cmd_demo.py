"""``ogmge demo``: Normal vs OGM-GE on the built-in data, same seed and settings.

Trains both with the ``demo`` preset (CPU-scale), then, while the time budget
allows, each modality alone; prints a table of test accuracies (fused and per
modality, from the concat head's linear split) at the epoch the validation split
selected, and writes the comparison plot (validation curves: the test split is
evaluated once per run, at the end).
With ``--jobs 2`` (the default on two or more cores) two runs train at once,
each in its own process with one thread; the results do not depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, cast

from .config_cli import _Retired


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="train Normal and OGM-GE on the built-in data and compare them (about a minute on 2 CPU cores)",
        description="Train Normal and OGM-GE with the same seed and settings on the built-in data, "
        "print fused and per-modality test accuracy, and plot both runs.",
    )
    p.add_argument("--out", default="ogmge-demo", metavar="DIR", help="where runs and the plot go (default ./ogmge-demo)")
    p.add_argument("--config", default="demo", metavar="PRESET_OR_YAML", help="settings (default: the demo preset)")
    p.add_argument("--seed", type=int, help="training seed (default: the preset's)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the preset's)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda (default: the preset's)")
    p.add_argument("--unimodal", action=argparse.BooleanOptionalAction, default=True,
                   help="also train each modality alone when time allows (default: yes)")
    p.add_argument("--budget", type=float, default=170.0, metavar="SECONDS",
                   help="skip the unimodal runs when they would not finish within this total time (default 170)")
    p.add_argument("--overwrite", action="store_true", help="replace the runs of an earlier demo in --out")
    p.add_argument("--imbalance", nargs="?", action=_Retired, help=argparse.SUPPRESS)  # built-in data v1's knob
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="runs trained at once, one process and one thread each (default: 2 on 2+ cores)")
    return p


def _train_one(values: dict, threads: int | None) -> dict:
    """Train one configuration (in this process or a worker) and summarise it."""
    import torch

    from ogmge.training import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    result = train(TrainConfig.from_dict(values))
    return {
        "run_dir": str(result.run_dir),
        "test": result.test_metrics or {},
        "best_epoch": result.best_epoch,
        "modalities": list(cast(Any, result.model).encoders),
        "seconds": time.perf_counter() - start,
    }


def _train_many(jobs: list[tuple[str, dict]], n_jobs: int) -> dict[str, dict]:
    if n_jobs <= 1 or len(jobs) == 1:
        return {label: _train_one(values, None) for label, values in jobs}
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(jobs)), mp_context=get_context("spawn")) as pool:
        futures = {label: pool.submit(_train_one, values, 1) for label, values in jobs}
        return {label: f.result() for label, f in futures.items()}


def run(args) -> int:
    from ogmge.training import TrainConfig
    from ogmge.training.rundir import is_run_dir

    from .cmd_train import setup_logging
    from .plots import PIXELS, plot_runs

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    setup_logging()
    t0 = time.perf_counter()
    out = Path(args.out)
    base = TrainConfig.load(args.config)
    changes: dict = {"progress": False}
    for key in ("seed", "epochs", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    base = base.replace(**changes)
    subdirs = ["normal", "ogm_ge"] + [f"{m}_only" for m in ("audio", "visual")]
    for sub in subdirs:  # --overwrite: the flag `ogmge train` shares (ogmge.training.rundir)
        if is_run_dir(out / sub):
            if not args.overwrite:
                raise ValueError(f"{out / sub} already holds a run; use --overwrite or another --out")
            shutil.rmtree(out / sub)
    print(f"ogmge demo: built-in data, seed {base.seed}, {base.epochs} epochs, fusion {base.fusion}, "
          f"alpha {base.alpha}, {args.jobs} job(s); outputs in {out}/", flush=True)

    joint = [
        ("Normal", base.replace(out=str(out / "normal"), name="Normal", modulation="Normal").to_dict()),
        ("OGM-GE", base.replace(out=str(out / "ogm_ge"), name="OGM-GE", modulation="OGM_GE").to_dict()),
    ]
    print("  training Normal and OGM-GE ...", flush=True)
    results = _train_many(joint, args.jobs)
    modalities = results["Normal"]["modalities"]
    if args.unimodal:
        elapsed = time.perf_counter() - t0
        per_run = max(r["seconds"] for r in results.values()) * 0.75  # one encoder instead of two
        rounds = -(-len(modalities) // args.jobs)
        if elapsed + rounds * per_run > args.budget:
            print(f"  skipping the unimodal runs ({elapsed:.0f} s spent, ~{rounds * per_run:.0f} s more "
                  f"would exceed the {args.budget:.0f} s budget; --budget to change it)")
        else:
            print(f"  training {', '.join(modalities)} alone ...", flush=True)
            alone = [
                (f"{m} alone", base.replace(out=str(out / f"{m}_only"), name=f"{m} alone", modalities=[m],
                                            modulation="Normal").to_dict())
                for m in modalities
            ]
            results.update(_train_many(alone, args.jobs))
    # validation curves (the split that selected each run's epoch); test is evaluated once, at the end
    plot = plot_runs([results["Normal"]["run_dir"], results["OGM-GE"]["run_dir"]], out / "comparison.png",
                     split="val")

    cols = ["fused"] + modalities
    print()
    print("test accuracy (%) at the epoch the validation split selected")
    print(f"{'run':<16}" + "".join(f"{c:>10}" for c in cols) + f"{'epoch':>8}")
    for label, r in results.items():
        t, joint_run = r["test"], len(r["modalities"]) > 1
        cells = []
        for c in cols:
            if c == "fused":
                v = t.get("acc") if joint_run else None
            elif c in r["modalities"]:
                v = t.get(f"modality_acc/{c}") if joint_run else t.get("acc")
            else:
                v = None
            cells.append(f"{100 * v:>10.1f}" if v is not None else f"{'-':>10}")
        print(f"{label:<16}" + "".join(cells) + f"{r['best_epoch'] + 1:>8}")
    print()
    print("Per-modality accuracy inside a joint model comes from its per-modality logits (the linear")
    print("split of the concat head); 'X alone' is the same encoder trained by itself.")
    print(f"runs:  {', '.join(r['run_dir'] for r in results.values())}")
    print(f"plot:  {plot} ({PIXELS[0]} x {PIXELS[1]} px; validation accuracy per epoch, coefficients per step)")
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return 0
