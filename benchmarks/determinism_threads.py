"""Are CPU runs bit-identical across repeats and across thread counts?

Trains the ``demo`` preset's Normal run (built-in data, 12 epochs; ``--epochs`` to
shorten) with ``torch.set_num_threads(n)`` for each ``n`` of ``--threads``, twice
for the first, in this process, and compares every epoch's validation metrics,
the final test metrics and the final weights bit for bit. Usage::

    nice python benchmarks/determinism_threads.py [--threads 1,2] [--epochs 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ogmge.training import TrainConfig, train


def one_run(threads: int, epochs: int, seed: int, out: Path) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = TrainConfig.load("demo").replace(method="normal", modulation="Normal", epochs=epochs, seed=seed,
                                               progress=False, out=str(out))
        r = train(cfg)
    finally:
        torch.set_num_threads(before)
    return {"val": [{k: v for k, v in row.items() if k.startswith("val/")} for row in r.history],
            "test": r.test_metrics, "best_epoch": r.best_epoch,
            "weights": {k: v.clone() for k, v in r.model.state_dict().items() if isinstance(v, torch.Tensor)}}


def same(a: dict, b: dict) -> bool:
    return (a["val"] == b["val"] and a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
            and all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    print(f"torch {torch.__version__}; {torch.__config__.parallel_info().splitlines()[1].strip()} by default")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(counts[0], one_run(counts[0], args.epochs, args.seed, Path(tmp) / "a"))]
        runs.append((counts[0], one_run(counts[0], args.epochs, args.seed, Path(tmp) / "b")))
        for i, n in enumerate(counts[1:]):
            runs.append((n, one_run(n, args.epochs, args.seed, Path(tmp) / f"c{i}")))
    ref_n, ref = runs[0]
    for n, run in runs:
        w = max(float((run["weights"][k].double() - ref["weights"][k].double()).abs().max()) for k in ref["weights"]
                if ref["weights"][k].is_floating_point())
        print(f"threads {n}: test acc {100 * run['test']['acc']:.2f} (selected epoch {run['best_epoch'] + 1}); "
              f"vs first run ({ref_n} thread(s)): {'bit-identical' if same(run, ref) else 'DIFFERENT'}, "
              f"max |weight difference| {w:.3g}")


if __name__ == "__main__":
    main()
