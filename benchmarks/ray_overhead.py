"""The same comparison on the local backend and on Ray, in one run: wall times, the Ray
runtime's start, and the per-run overhead of a Ray task.

    python benchmarks/ray_overhead.py                      # demo settings, normal + ogm_ge, seeds 0,1
    python benchmarks/ray_overhead.py --methods normal --seeds 0 --epochs 2   # quick

Both comparisons use ``cpus_per_run`` 1 (one torch thread per run) and two runs at once
(the local pool's ``jobs`` 2; a local Ray runtime with 2 CPUs), so they do the same work
on the same cores. Reported:

- ``ray.init``: starting the local Ray runtime (a cluster's start is not part of this);
- per run, the Ray task's overhead = the task's wall time minus the time inside
  ``train()`` (the whole work call: building data and model, training, writing results;
  what is left is the storage check, thread setting, retry bookkeeping and result
  transfer inside the worker), median and range over runs, and as a share of the run;
  also the task's wall time minus the training alone (``Trainer.fit``), which charges the
  run's data and model building to Ray although a local run pays it too;
- the whole comparison's wall time per backend, and (Ray − init − local) / runs: the
  overhead per run as the driver sees it, scheduling included.
Runs are checked to be identical (results.json) between the two backends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo")
    ap.add_argument("--methods", default="normal,ogm_ge")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()

    import ray

    from ogmge.interfaces.compare_report import compare
    from ogmge.training import TrainConfig
    from ogmge.training.compare.ray_executor import RayExecutor

    cfg = TrainConfig.load(args.config)
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs)
    cfg = cfg.replace(progress=False)
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        compare(cfg, out=root / "local", methods=methods, seeds=seeds, jobs=2, cpus_per_run=1, echo=None,
                progress=False)
        local_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        executor = RayExecutor(cpus_per_run=1)
        t0 = time.perf_counter()
        compare(cfg, out=root / "ray", methods=methods, seeds=seeds, executor=executor, echo=None, progress=False)
        ray_s = time.perf_counter() - t0
        ray.shutdown()

        same = all(json.loads(p.read_text()) == json.loads((root / "local" / p.relative_to(root / "ray")).read_text())
                   for p in (root / "ray").rglob("results.json"))
        stats = list(executor.task_stats.values())
        over = [s["task_seconds"] - s["work_seconds"] for s in stats]
        share = [(s["task_seconds"] - s["work_seconds"]) / s["work_seconds"] for s in stats]
        over_fit = [s["task_seconds"] - s["seconds"] for s in stats]
        runs = len(stats)
        print(f"comparison: {args.config}, methods {methods} (+ normal, each modality alone), seeds {seeds}: {runs} runs")
        print(f"local backend (2 processes x 1 thread): {local_s:.1f} s wall")
        print(f"ray.init (local runtime, 2 CPUs): {init_s:.1f} s")
        print(f"ray backend (tasks of 1 CPU): {ray_s:.1f} s wall, init excluded")
        print(f"run inside train(): median {statistics.median(s['work_seconds'] for s in stats):.2f} s "
              f"(of which Trainer.fit {statistics.median(s['seconds'] for s in stats):.2f} s)")
        print(f"task overhead (task wall - train()): median {statistics.median(over):.3f} s "
              f"({min(over):.3f}-{max(over):.3f}), median share of the run {100 * statistics.median(share):.2f} %")
        print(f"task wall - Trainer.fit (data and model building included): median "
              f"{statistics.median(over_fit):.3f} s ({min(over_fit):.3f}-{max(over_fit):.3f})")
        print(f"driver-side overhead per run ((ray - local) / runs): {(ray_s - local_s) / runs:.2f} s")
        print(f"results.json identical between the backends: {same}")


if __name__ == "__main__":
    main()
