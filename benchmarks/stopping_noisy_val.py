"""Early stopping on a noisy, one-speaker validation split: ``raw`` vs ``smoothed`` vs a fixed budget.

The built-in data (regime ``paper``) with its validation split cut to one speaker
(``s08``, 150 samples; train: 8 speakers, test: 2), method ``normal``, the demo's small
encoders (``model_options: {hidden: 16, out_dim: 32}``), Adam at the
default rate (``optimizer: auto``), ``--epochs`` (40) epochs, seeds 0-4. Each seed
trains once for the whole budget with test logged every epoch; since training does
not depend on the rule, each rule is then replayed on that run's validation curve
(``ogmge.training.stopping``) and scored by the test accuracy of the epoch it keeps:

* ``raw``: the rule before ``smoothed`` (best single epoch, patience 10);
* ``smoothed``: ``smoothed_v1`` with ``patience: auto`` (the default now);
* ``fixed``: every epoch, the last one kept.

``--check-live`` also trains seed 0 with the default rule in the loop itself and
checks that it keeps the epoch, and the test accuracy, the replay says.
Prints per-seed rows, means, and the paired differences with their standard error
(std ddof 1 / sqrt(seeds)). One torch thread. Usage::

    nice python benchmarks/stopping_noisy_val.py [--seeds 0,1,2,3,4] [--epochs 40] [--check-live]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ogmge.data.builtin import make_builtin_dataset
from ogmge.training import DataBundle, TrainConfig, train
from ogmge.training.stopping import RawRule, SmoothedRule

VAL_SPEAKER = "s08"


def bundle() -> DataBundle:
    val = make_builtin_dataset("val")
    keep = [i for i, g in enumerate(val.groups) if g == VAL_SPEAKER]
    return DataBundle(make_builtin_dataset("train"), val.subset(torch.tensor(keep)), make_builtin_dataset("test"))


def config(seed: int, epochs: int, out: Path, **changes) -> TrainConfig:
    values = dict(dataset="builtin", method="normal", model_options={"hidden": 16, "out_dim": 32}, epochs=epochs, seed=seed, device="cpu", progress=False,
                  eval_test_every_epoch=True, patience=None, stopping="smoothed", out=str(out), name=f"seed {seed}")
    values.update(changes)
    return TrainConfig(**values)


def replay(rule, history: list[dict]) -> tuple[int, int, float]:
    """``(epochs run, kept epoch, its test accuracy)`` of ``rule`` on a full run's rows."""
    run = len(history)
    for row in history:
        if rule.update(row["epoch"], {"acc": row["val/acc"], "loss": row["val/loss"]}).stop:
            run = row["epoch"] + 1
            break
    return run, rule.best_epoch, history[rule.best_epoch]["test/acc"]


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    return statistics.mean(d), (statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--check-live", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)  # tiny models: one thread is faster, and the figures do not depend on it
    data = bundle()
    t0 = time.perf_counter()
    acc: dict[str, list[float]] = {"raw": [], "smoothed": [], "fixed": []}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"one-speaker validation ({VAL_SPEAKER}, {len(data.val)} samples), Normal, Adam, {args.epochs} epochs")
        print("seed | raw: run/kept/test | smoothed: run/kept/test | fixed: test | val acc range")
        for seed in seeds:
            h = train(config(seed, args.epochs, Path(tmp) / f"s{seed}"), datasets=data).history
            raw = replay(RawRule(epochs=args.epochs, patience=10), h)
            smooth = replay(SmoothedRule(epochs=args.epochs, patience="auto"), h)
            fixed = h[-1]["test/acc"]
            for name, value in (("raw", raw[2]), ("smoothed", smooth[2]), ("fixed", fixed)):
                acc[name].append(100 * value)
            vals = [r["val/acc"] for r in h]
            print(f"{seed} | {raw[0]}/{raw[1] + 1}/{100 * raw[2]:.1f} | {smooth[0]}/{smooth[1] + 1}/"
                  f"{100 * smooth[2]:.1f} | {100 * fixed:.1f} | {100 * min(vals):.1f}-{100 * max(vals):.1f}")
            if args.check_live and seed == seeds[0]:
                live = train(config(seed, args.epochs, Path(tmp) / "live", patience="auto",
                                    eval_test_every_epoch=False), datasets=data)
                ok = (len(live.history), live.best_epoch) == smooth[:2] and live.test_metrics["acc"] == smooth[2]
                print(f"  live run with the default rule: {len(live.history)} epochs, kept "
                      f"{live.best_epoch + 1}, test {100 * live.test_metrics['acc']:.1f} "
                      f"({'same as' if ok else 'DIFFERS FROM'} the replay)")
    for name, values in acc.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:9s} test acc {statistics.mean(values):.1f} ± {sd:.1f} (mean ± std over {len(values)} seeds)")
    for a, b in (("smoothed", "fixed"), ("raw", "fixed"), ("smoothed", "raw")):
        m, se = paired(acc[a], acc[b])
        print(f"{a} - {b}: {m:+.1f} ± {se:.1f} (paired mean ± standard error)")
    m, se = paired(acc["smoothed"], acc["fixed"])
    print(f"criterion smoothed >= fixed - 1 SE: {'met' if m >= -se else 'NOT met'}")
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
