"""Calibration of the built-in data v2 (issue 11): unimodal runs and plain joint training only.

For each training seed, with the regime's preset (the demo's budget, fixed epochs):
each modality alone and the joint model, all with ``modulation: Normal`` and
``opm: false`` -- never a balancing method. Prints test accuracy per run, the
3-seed mean ± std, the ideal fusion ceiling ``1 - prod(1 - p_m) * 5/6`` from
the regime's cue probabilities, and the gap between each modality alone and
the same modality inside the joint model (its per-modality logits,
``modality_acc/<name>``). Targets for regime ``paper`` (DESIGN §8, issue 11):
audio alone 60 ± 3 %, visual alone 50 ± 3 %, ceiling >= 75 %, visual gap >= 10.

    python benchmarks/builtin_calibration.py                       # regime paper, seeds 0 1 2
    python benchmarks/builtin_calibration.py --regime weak_useless
    python benchmarks/builtin_calibration.py --regime paper3
    python benchmarks/builtin_calibration.py --set epochs=20 --set 'dataset_options={regime: paper, cue_prob: {visual: 0.4}}'

Each run is a separate process with one thread (``--jobs`` at once).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml


def _run(values: dict) -> dict:
    import torch

    from ogmge.training import TrainConfig, train

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(TrainConfig.from_dict(values))
    return {"test": result.test_metrics or {}, "seconds": time.perf_counter() - t0,
            "cpu": time.process_time() - c0, "best_epoch": result.best_epoch}


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def main(argv: list[str] | None = None) -> int:
    from ogmge.data.builtin import builtin_identity
    from ogmge.training import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regime", default="paper", help="paper, weak_useless or paper3 (default paper)")
    p.add_argument("--config", help="preset or YAML (default: builtin_<regime>)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each (default 2)")
    p.add_argument("--out", help="where the runs go (default: a temporary directory)")
    args = p.parse_args(argv)

    base = TrainConfig.load(args.config or f"builtin_{args.regime}")
    changes = {}
    for item in args.set:
        key, value = item.split("=", 1)
        changes[key.strip()] = yaml.safe_load(value)
    base = base.replace(modulation="Normal", opm=False, progress=False, **changes)
    identity = builtin_identity(base.dataset_options)
    probs = identity["cue_prob"]
    modalities = list(probs)
    miss = 1.0
    for q in probs.values():
        miss *= 1.0 - q
    ceiling = 1.0 - miss * 5 / 6

    out = Path(args.out or tempfile.mkdtemp(prefix="ogmge-calib-"))
    jobs = []
    for seed in args.seeds:
        for m in modalities:
            jobs.append((f"{m} alone", seed, {"modalities": [m]}))
        jobs.append(("Normal (joint)", seed, {}))
    print(f"built-in data v{identity['version']}, regime {identity['regime']!r}, cue_prob {probs}, "
          f"data seed {identity['seed']}; {base.epochs} epochs, fusion {base.fusion}, lr {base.lr}, "
          f"batch {base.batch_size}, seeds {args.seeds}; runs in {out}", flush=True)
    t0 = time.perf_counter()
    values = [
        base.replace(seed=seed, out=str(out / f"{label.split()[0].lower()}_s{seed}"), **extra).to_dict()
        for label, seed, extra in jobs
    ]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_run, values))
    else:
        results = [_run(v) for v in values]

    cols = ["fused", *modalities]
    print()
    print("test accuracy (%) at the epoch the validation split selected")
    print(f"{'run':<16}{'seed':>5}" + "".join(f"{c:>9}" for c in cols) + f"{'epoch':>7}{'s':>6}")
    table: dict[tuple[str, str], list[float]] = {}
    for (label, seed, extra), r in zip(jobs, results):
        t = r["test"]
        cells = []
        for c in cols:
            if extra:  # one modality alone
                v = t.get("acc") if c == extra["modalities"][0] else None
            else:
                v = t.get("acc") if c == "fused" else t.get(f"modality_acc/{c}")
            if v is not None:
                table.setdefault((label, c), []).append(v)
            cells.append(f"{100 * v:>9.1f}" if v is not None else f"{'-':>9}")
        print(f"{label:<16}{seed:>5}" + "".join(cells) + f"{r['best_epoch'] + 1:>7}{r['seconds']:>6.1f}")
    print()
    print(f"mean ± std over seeds {args.seeds}")
    labels = [f"{m} alone" for m in modalities] + ["Normal (joint)"]
    for label in labels:
        print(f"{label:<16}" + "".join(f"{_fmt(table.get((label, c), [])):>14}" for c in cols))
    print()
    print(f"ideal fusion ceiling 1 - prod(1 - p) * 5/6 = {100 * ceiling:.1f} %")
    for m in modalities:
        alone, joint = table.get((f"{m} alone", m), []), table.get(("Normal (joint)", m), [])
        if alone and joint:
            gaps = [a - j for a, j in zip(alone, joint)]
            print(f"{m}: alone - inside Normal = {_fmt(gaps)} points (per seed: "
                  f"{', '.join(f'{100 * g:.1f}' for g in gaps)})")
    times = [r["seconds"] for r in results]
    cpu = [r["cpu"] for r in results]
    print(f"time per run (one thread, data generation included): wall {min(times):.1f}-{max(times):.1f} s "
          f"(mean {statistics.fmean(times):.1f}); CPU {min(cpu):.1f}-{max(cpu):.1f} s (mean {statistics.fmean(cpu):.1f}, "
          f"the wall time on an idle core); total {time.perf_counter() - t0:.0f} s with {args.jobs} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
