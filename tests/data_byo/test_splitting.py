"""Seeded stratified and group-aware splits."""

import numpy as np
import pytest

from ogmge.data.byo import ArrayDataset
from ogmge.data.splitting import DatasetView, group_split, split_dataset, stratified_split


def test_stratified_split_keeps_class_ratios_and_is_seeded():
    y = [0] * 50 + [1] * 30 + [2] * 20
    train, val = stratified_split(y, val_fraction=0.2, seed=3)
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    counts = np.bincount(np.asarray(y)[val])
    assert counts.tolist() == [10, 6, 4]
    assert stratified_split(y, val_fraction=0.2, seed=3) == (train, val)
    assert stratified_split(y, val_fraction=0.2, seed=4) != (train, val)
    gen_a = stratified_split(y, val_fraction=0.2, seed=np.random.default_rng(9))
    assert gen_a == stratified_split(y, val_fraction=0.2, seed=np.random.default_rng(9))


def test_stratified_split_small_class_on_both_sides():
    train, val = stratified_split([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], val_fraction=0.1, seed=0)
    assert 0 in [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1][i] for i in val]
    assert len(val) == 2


def test_group_split_keeps_each_group_on_one_side():
    groups = [f"actor{i % 7}" for i in range(70)]
    train, val = group_split(groups, val_fraction=0.25, seed=1)
    tg = {groups[i] for i in train}
    vg = {groups[i] for i in val}
    assert not tg & vg and tg and vg
    assert len(val) >= 0.25 * 70
    assert group_split(groups, val_fraction=0.25, seed=1) == (train, val)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"val_fraction": 1.0}, "val_fraction must be a number in \\(0, 1\\), got 1.0"),
     ({"seed": -1}, "seed must be a non-negative integer")],
)
def test_split_arguments_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stratified_split([0, 1, 0, 1], **kwargs)


def test_split_dataset_by_class_and_group():
    n = 40
    ds = ArrayDataset({"x": np.arange(n * 2, dtype=np.float32).reshape(n, 2)}, np.arange(n) % 4,
                      kinds={"x": "vector"}, groups=[i // 5 for i in range(n)])
    tr, va = split_dataset(ds, val_fraction=0.25, seed=0, by="group")
    assert not set(tr.groups) & set(va.groups) and len(tr) + len(va) == n
    tr, va = split_dataset(ds, val_fraction=0.25, seed=0)
    assert np.bincount(va.targets).tolist() == [2, 2, 2, 2]  # round(10 * 0.25) per class
    view = DatasetView(ds, [3, 1])
    assert view.targets == [3, 1] and view[0]["inputs"]["x"].tolist() == [6.0, 7.0]
    with pytest.raises(ValueError, match="by must be"):
        split_dataset(ds, by="speaker")
