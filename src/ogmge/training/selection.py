"""Which validation samples select a run (``val_selection``), and which are held out from it.

By default a run selects its epoch (and stops early) on its whole validation split.
``val_selection`` narrows that, for comparisons that must score a choice on samples
the choice never saw (``ogmge compare --tune``, docs/training.md):

- ``{half: A, seed: S}``: the validation split is cut into two seeded halves A and B,
  stratified by class (:func:`stratified_halves`; a plain random cut of a small split
  can give one half most of one class); half A is the run's validation split for
  everything (epoch selection, early stopping, and a method fitted on validation fits
  and is scored within A by its own cross-fitting: on A₁ ⊂ A and A₂). Half B is never
  read during training; with ``holdout: true`` the selected checkpoint (fitted parts
  fitted on A) is evaluated on B once, at the end (``results.json``: ``holdout``).
- ``{folds: K, fold: k, seed: S}``: the training and validation splits pooled and cut
  into ``K`` seeded folds, whole groups at a time when the data have groups (speaker,
  subject), else stratified by class; fold ``k`` is the validation split, the other
  folds train. The test split is untouched. Combined with ``half``, fold ``k`` is itself
  cut into halves A and B as above.

Pooled samples keep their split's own transforms (a validation sample is not augmented
when it trains in a fold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ogmge.data.splitting import subset

from .data import DataBundle

KEYS = ("half", "seed", "holdout", "folds", "fold")
HALVES = ("A", "B")


def check_selection(value: Any) -> dict:
    """``val_selection`` checked (ValueError naming the key); ``{}`` means the whole split."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"val_selection must be a mapping (keys {list(KEYS)}), got {value!r}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ValueError(f"val_selection: unknown keys {unknown}; known: {list(KEYS)}")
    half, folds, fold = value.get("half"), value.get("folds"), value.get("fold")
    if half is not None and half not in HALVES:
        raise ValueError(f"val_selection.half must be 'A' or 'B', got {half!r}")
    for key in ("seed", "folds", "fold"):
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"val_selection.{key} must be an integer >= 0, got {v!r}")
    if (folds is None) != (fold is None):
        raise ValueError(f"val_selection: folds and fold go together, got folds={folds!r}, fold={fold!r}")
    if folds is not None:
        if folds < 2:
            raise ValueError(f"val_selection.folds must be >= 2, got {folds}")
        if fold >= folds:
            raise ValueError(f"val_selection.fold must be in [0, {folds}), got {fold}")
    holdout = value.get("holdout", False)
    if not isinstance(holdout, bool):
        raise ValueError(f"val_selection.holdout must be true or false, got {holdout!r}")
    if holdout and half is None:
        raise ValueError("val_selection.holdout needs half (the other half is the held-out one)")
    return dict(value)


class PooledDataset(torch.utils.data.Dataset):
    """Several contract datasets one after another (the training and validation splits
    pooled for K-fold), keeping the contract attributes of the first."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        first = self.parts[0]
        self.modalities = dict(first.modalities)
        self.num_classes = int(first.num_classes)
        self.class_names = list(getattr(first, "class_names", [str(c) for c in range(self.num_classes)]))
        self.targets = [int(t) for p in self.parts for t in p.targets]
        groups = [getattr(p, "groups", None) for p in self.parts]
        self.groups: list | None = None
        if all(g is not None for g in groups):
            self.groups = [x for g in groups if g is not None for x in g]
        self._where = [(i, j) for i, p in enumerate(self.parts) for j in range(len(p))]

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, index: int) -> dict:
        part, row = self._where[index]
        return self.parts[part][row]

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            fn = getattr(p, "set_epoch", None)
            if callable(fn):
                fn(epoch)


def kfold(targets: Sequence[int], groups: Sequence | None, k: int, seed: int) -> list[list[int]]:
    """``k`` disjoint folds covering ``range(len(targets))``, seeded.

    With at least ``k`` distinct groups, whole groups: groups in a seeded random order
    each go to the fold with the fewest samples so far (ties: the lower fold). Otherwise
    stratified: each class's samples in a seeded random order dealt to the folds in turn,
    continuing where the previous class stopped (so fold sizes differ by at most one).
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(targets)
    folds: list[list[int]] = [[] for _ in range(k)]
    if groups is not None and len(set(map(str, groups))) >= k:
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(str(g), []).append(i)
        names = sorted(members)
        for gi in torch.randperm(len(names), generator=gen).tolist():
            target = min(range(k), key=lambda f: (len(folds[f]), f))
            folds[target].extend(members[names[gi]])
    else:
        turn = 0
        for c in sorted(set(int(t) for t in targets)):
            rows = [i for i in range(n) if int(targets[i]) == c]
            for j in torch.randperm(len(rows), generator=gen).tolist():
                folds[turn % k].append(rows[j])
                turn += 1
    return [sorted(f) for f in folds]


def stratified_halves(targets: Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves (A, B) of ``range(len(targets))`` with every class split evenly:
    each class's samples in a seeded random order, alternately to A and B, the first of
    each class to the half that is smaller so far (ties: A). Sizes differ by at most one,
    each class's counts by at most one."""
    gen = torch.Generator().manual_seed(seed)
    a: list[int] = []
    b: list[int] = []
    for c in sorted(set(int(t) for t in targets)):
        rows = [i for i, t in enumerate(targets) if int(t) == c]
        order = [rows[j] for j in torch.randperm(len(rows), generator=gen).tolist()]
        first, second = (a, b) if len(a) <= len(b) else (b, a)
        for k, i in enumerate(order):
            (first if k % 2 == 0 else second).append(i)
    return sorted(a), sorted(b)


def select_validation(bundle: DataBundle, selection: dict) -> tuple[DataBundle, Any | None]:
    """``(bundle for the run, held-out part or None)`` under ``selection`` (module docstring)."""
    if not selection:
        return bundle, None
    if bundle.val is None:
        raise ValueError("val_selection needs a validation split (val_fraction > 0, or data with one)")
    seed = int(selection.get("seed") or 0)
    train, val = bundle.train, bundle.val
    if selection.get("folds"):
        pooled = PooledDataset([train, val])
        folds = kfold(pooled.targets, pooled.groups, int(selection["folds"]), seed)
        held = folds[int(selection["fold"])]
        keep = sorted(i for f, rows in enumerate(folds) if f != int(selection["fold"]) for i in rows)
        if not held or not keep:
            raise ValueError(f"val_selection: fold {selection['fold']} of {selection['folds']} leaves an empty "
                             f"split ({len(pooled)} samples pooled)")
        train, val = subset(pooled, keep), subset(pooled, held)
    other = None
    if selection.get("half"):
        a, b = stratified_halves(list(val.targets), seed)
        if selection["half"] == "B":
            a, b = b, a
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"val_selection: halves of a validation split of {len(val)} samples: one is empty")
        val, other = subset(val, a), subset(val, b)
    return DataBundle(train, val, bundle.test), other
