"""How often each selection protocol of a tuned comparison picks the known best candidate,
by the size of the validation split (the reason for ``CV_BELOW``).

Generated data with a known best candidate: four candidates with true accuracies
64, 67, 67 and 70 % (the best is last in the tie order, so ties work against it). A
run's true accuracy varies from seed to seed (sd 1.5 points); on each scored sample a
candidate is right with its run's accuracy, the candidates' errors sharing a per-sample
difficulty (correlation ``RHO``: hard samples are hard for every method). Protocols:

- ``halves``: the verdict's score is half B of the validation split (n_val / 2 samples),
  mean over 3 seeds;
- ``cv``: 5 folds of train + validation pooled (n_train = 4 n_val), half B inside each
  fold: (n_train + n_val) / 2 scored samples per seed, one run per fold, mean over 3 seeds.

Both then apply the tie rule (within 0.5 points of the best: the simplest). Each row is
the share of ``TRIALS`` generated comparisons in which the protocol picks the best.

    python benchmarks/tune_protocols.py [--trials 4000]
"""

from __future__ import annotations

import argparse

import numpy as np

TRUE = np.array([0.64, 0.67, 0.67, 0.70])  # tie order = index order; the best is last
SEED_SD = 0.015
RHO = 0.6
TOL = 0.005
SEEDS = 3
FOLDS = 5


def scores(rng: np.random.Generator, n_scored: int, folds: int) -> np.ndarray:
    """Mean accuracy of each candidate over ``SEEDS`` seeds x ``folds`` folds; the fold's
    ``n_scored / folds`` samples are the same for every seed (one split), one row per candidate."""
    total = np.zeros(len(TRUE))
    per_fold = max(1, round(n_scored / folds))
    for _ in range(folds):
        shared = rng.random(per_fold)  # each sample's difficulty, the same for every seed and candidate
        for _ in range(SEEDS):
            acc = np.clip(TRUE + rng.normal(0, SEED_SD, len(TRUE)), 0, 1)
            own = rng.random((len(TRUE), per_fold))
            u = np.where(rng.random((len(TRUE), per_fold)) < RHO, shared[None, :], own)
            total += (u < acc[:, None]).mean(1)
    return total / (folds * SEEDS)


def pick(s: np.ndarray) -> int:
    best = s.max()
    return int(np.flatnonzero(s >= best - TOL - 1e-12)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'n_val':>6} {'halves':>7} {'cv5':>7}   (share of {args.trials} comparisons picking the best)")
    for n_val in (13, 26, 50, 100, 200, 400, 800, 1600):
        n_train = 4 * n_val
        hits = {"halves": 0, "cv": 0}
        for _ in range(args.trials):
            hits["halves"] += pick(scores(rng, n_val // 2, 1)) == len(TRUE) - 1
            hits["cv"] += pick(scores(rng, (n_train + n_val) // 2, FOLDS)) == len(TRUE) - 1
        print(f"{n_val:>6} {hits['halves'] / args.trials:>7.3f} {hits['cv'] / args.trials:>7.3f}")


if __name__ == "__main__":
    main()
