"""Seeded train/validation splits, stratified by class or group-aware (speaker/subject):
the package's one split implementation (bring-your-own data, the training loop's
hold-outs and the paper datasets' validation carve all use it).

Every function takes ``seed``: an ``int`` or an explicit ``numpy.random.Generator``.
Indices come back sorted, so the same seed always gives the same split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..validation import check_number
from .views import DatasetView

SplitIndices = tuple[list[int], list[int]]


def _seed(seed: int | np.random.Generator) -> int:
    """The integer seed of the split's ``torch.Generator`` (a numpy Generator gives one draw)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    return check_number("seed", seed, integer=True, lo=0)


def _fraction(field: str, value: float, allow_zero: bool) -> float:
    return check_number(field, value, lo=0, hi=1, lo_open=not allow_zero, hi_open=True)


def stratified_split(
    targets: Sequence[int], *, val_fraction: float = 0.1, seed: int | np.random.Generator = 0,
    allow_zero: bool = False, field: str = "val_fraction",
) -> SplitIndices:
    """``(train, val)`` indices, each class split in the ratio ``val_fraction``.

    ``n_val = floor(val_fraction * N + 1/2)`` samples go to val, shared among the
    classes in proportion to their sizes (each class gets the floor of its quota, the
    rest go by largest remainder, ties to the smaller label); in each class, in label
    order, a permutation from one ``torch.Generator`` seeded with ``seed`` picks them.
    This is the paper datasets' validation carve: it must not change, or resumed runs
    would switch splits (``tests/data_paper/test_split_pinned.py``). ``allow_zero``
    accepts ``val_fraction = 0`` (everything to train).
    """
    fraction = _fraction(field, val_fraction, allow_zero)
    g = torch.Generator().manual_seed(_seed(seed))
    y = list(targets)
    if fraction == 0 or not y:
        return list(range(len(y))), []
    labels = sorted(set(y))
    members = {c: [i for i, t in enumerate(y) if t == c] for c in labels}
    quota = {c: fraction * len(members[c]) for c in labels}
    take = {c: math.floor(q) for c, q in quota.items()}
    extra = math.floor(fraction * len(y) + 0.5) - sum(take.values())
    for c in sorted(labels, key=lambda c: (-(quota[c] - take[c]), c))[: max(0, extra)]:
        take[c] += 1
    val: set[int] = set()
    for c in labels:
        perm = torch.randperm(len(members[c]), generator=g).tolist()
        val.update(members[c][j] for j in perm[: take[c]])
    return [i for i in range(len(y)) if i not in val], sorted(val)


def group_split(
    groups: Sequence, *, val_fraction: float = 0.1, seed: int | np.random.Generator = 0,
    allow_zero: bool = False, field: str = "val_fraction",
) -> SplitIndices:
    """``(train, val)`` indices with every group (speaker, actor, subject) wholly on one side.

    Of the ``G`` distinct groups (sorted), a permutation from a ``torch.Generator`` seeded
    with ``seed`` picks ``floor(val_fraction * G + 1/2)`` for val, at least one and at most
    ``G - 1`` (the paper datasets' actor-disjoint carve, unchanged). ``allow_zero``
    accepts ``val_fraction = 0`` (everything to train).
    """
    fraction = _fraction(field, val_fraction, allow_zero)
    g = list(groups)
    if fraction == 0 or not g:
        return list(range(len(g))), []
    unique = sorted(set(g))
    if len(unique) < 2:
        raise ValueError(f"groups must hold at least two distinct groups, got {len(unique)}")
    gen = torch.Generator().manual_seed(_seed(seed))
    perm = torch.randperm(len(unique), generator=gen).tolist()
    count = min(max(math.floor(fraction * len(unique) + 0.5), 1), len(unique) - 1)
    held = {unique[i] for i in perm[:count]}
    return [i for i, x in enumerate(g) if x not in held], [i for i, x in enumerate(g) if x in held]


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
