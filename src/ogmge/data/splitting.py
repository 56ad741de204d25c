"""Seeded train/validation splits: stratified by class, or group-aware (speaker/subject).

Every function takes ``seed``: an ``int`` or an explicit ``numpy.random.Generator``.
Indices come back sorted, so the same seed always gives the same split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

SplitIndices = tuple[list[int], list[int]]


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_fraction(val_fraction: float) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    return float(val_fraction)


def stratified_split(
    targets: Sequence[int], *, val_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> SplitIndices:
    """``(train, val)`` indices with each class split in the ratio ``val_fraction``.

    Every class with at least two samples puts at least one in each side.
    """
    frac = _check_fraction(val_fraction)
    rng = _rng(seed)
    y = np.asarray(targets)
    if y.ndim != 1 or len(y) < 2:
        raise ValueError(f"targets must be 1-D with at least two entries, got shape {y.shape}")
    val: list[int] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        k = int(round(len(members) * frac))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        val.extend(members[:k].tolist())
    val_set = set(val)
    return [i for i in range(len(y)) if i not in val_set], sorted(val)


def group_split(
    groups: Sequence, *, val_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> SplitIndices:
    """``(train, val)`` indices with every group (speaker, subject) wholly on one side.

    Groups are shuffled and moved to validation until it holds at least
    ``val_fraction`` of the samples; both sides get at least one group.
    """
    frac = _check_fraction(val_fraction)
    rng = _rng(seed)
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {g.shape}")
    unique = np.unique(g)
    if len(unique) < 2:
        raise ValueError(f"groups must hold at least two distinct groups, got {len(unique)}")
    order = rng.permutation(len(unique))
    target = math.ceil(frac * len(g))
    chosen, count = [], 0
    for j in order[:-1]:
        if count >= target:
            break
        chosen.append(unique[j])
        count += int((g == unique[j]).sum())
    in_val = np.isin(g, np.asarray(chosen))
    return np.flatnonzero(~in_val).tolist(), np.flatnonzero(in_val).tolist()


class DatasetView(Dataset):
    """Rows ``indices`` of a dataset, keeping its contract attributes
    (``modalities``, ``num_classes``, ``class_names``; ``targets`` and ``groups`` re-indexed)
    and forwarding ``set_epoch`` (per-epoch augmentations) to it."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:  # a contract dataset
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.modalities = dict(dataset.modalities)
        self.num_classes = int(dataset.num_classes)
        self.class_names = list(getattr(dataset, "class_names", [str(c) for c in range(self.num_classes)]))
        targets = list(dataset.targets)
        self.targets = [targets[i] for i in self.indices]
        groups = getattr(dataset, "groups", None)
        self.groups = None if groups is None else [groups[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """Batched fetch (what a DataLoader calls), through the dataset's own when it has one."""
        rows = [self.indices[i] for i in indices]
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(rows) if callable(fetch) else [self.dataset[i] for i in rows]

    def set_epoch(self, epoch: int) -> None:
        fn = getattr(self.dataset, "set_epoch", None)
        if callable(fn):
            fn(epoch)


def subset(dataset: Any, indices: Sequence[int]) -> Dataset:
    """Rows ``indices`` of a contract dataset: its own ``subset`` when it has one, else a :class:`DatasetView`."""
    if hasattr(dataset, "subset"):
        return dataset.subset(list(indices))
    return DatasetView(dataset, indices)


def split_dataset(
    dataset: Any,
    *,
    val_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    by: str = "class",
) -> tuple[Dataset, Dataset]:
    """Split a contract dataset into ``(train, val)``: stratified (``by="class"``)
    or group-aware (``by="group"``, needs ``dataset.groups``)."""
    if by == "class":
        train, val = stratified_split(dataset.targets, val_fraction=val_fraction, seed=seed)
    elif by == "group":
        groups = getattr(dataset, "groups", None)
        if groups is None:
            raise ValueError("by='group' needs a dataset with a 'groups' attribute (the 'group' column)")
        train, val = group_split(groups, val_fraction=val_fraction, seed=seed)
    else:
        raise ValueError(f"by must be 'class' or 'group', got {by!r}")
    return subset(dataset, train), subset(dataset, val)
