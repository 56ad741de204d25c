"""Cost of a tuned comparison: ``ogmge compare --tune 8`` vs the untuned ``ogmge compare``,
wall time and verdict, both in one run, on the built-in ``paper`` regime.

The tuned comparison is everything it does: 8 trials per candidate (every method, Normal
and each modality alone; pruned trials stop early), the chosen settings' seeds, and the
default rows (the defaults' seeds, when another setting won). Goal: at most 4x the
untuned comparison's wall time.

    python benchmarks/tune_cost.py                                   # every method, seeds 0,1,2
    python benchmarks/tune_cost.py --methods normal,ogm_ge,mmpareto --seeds 0 --out /tmp/tune-cost
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    import ogmge

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="builtin_paper")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every method)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--out", default=None, help="keep both comparisons here (default: a temporary directory)")
    args = ap.parse_args()
    methods = args.methods.split(",") if args.methods else None
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tune-cost-"))
    for name in ("untuned", "tuned"):
        shutil.rmtree(root / name, ignore_errors=True)
    t0 = time.perf_counter()
    plain = ogmge.compare(args.config, out=root / "untuned", methods=methods, seeds=seeds, jobs=args.jobs,
                          echo=None, progress=False)
    untuned = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuned_report = ogmge.compare(args.config, out=root / "tuned", methods=methods, seeds=seeds, jobs=args.jobs,
                                 tune=args.trials, echo=None, progress=False)
    tuned = time.perf_counter() - t0
    v = tuned_report["verdict"]
    print(f"config {args.config}, methods {methods or 'all'}, seeds {seeds}, {args.trials} trials per candidate")
    print(f"untuned: {untuned:.0f} s wall, verdict: {plain['selected']} (validation)")
    print(f"tuned:   {tuned:.0f} s wall (trials {tuned_report['seconds']['tuning']:.0f} s, chosen and default runs "
          f"{tuned_report['seconds']['final_runs']:.0f} s), verdict: {v['selected']} (half B)")
    print(f"ratio tuned / untuned: {tuned / untuned:.2f}x (goal <= 4x)")
    for name, e in tuned_report["candidates"].items():
        t = e["trials"]
        print(f"  {name}: trials {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed; "
              f"default B {e['default']['mean_b']}, tuned B {e['tuned']['mean_b']}, tuned test {e['tuned']['mean_test']}")
    print(f"outputs: {root}")


if __name__ == "__main__":
    main()
