"""Seeded stratified and group-aware splits."""

import numpy as np
import pytest

from ogmge.data.arrays import ArrayDataset
from ogmge.data.splitting import group_split, split_dataset, stratified_split
from ogmge.data.views import DatasetView


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


def test_stratified_split_shares_the_total_by_largest_remainder():
    # n_val = floor(0.1 * 10 + 1/2) = 1; quotas 0.2 and 0.8: the larger remainder takes it
    train, val = stratified_split([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], val_fraction=0.1, seed=0)
    assert len(val) == 1 and val[0] >= 2
    # 4 classes of 10 at 0.25: n_val = 10, quotas 2.5 each; ties go to the smaller labels
    _, val = stratified_split(np.arange(40) % 4, val_fraction=0.25, seed=5)
    assert np.bincount(np.arange(40)[val] % 4).tolist() == [3, 3, 2, 2]
    assert stratified_split([0, 1, 0, 1], val_fraction=0, seed=0, allow_zero=True) == ([0, 1, 2, 3], [])


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
    [({"val_fraction": 1.0}, "val_fraction must be a finite number in \\(0, 1\\), got 1.0"),
     ({"seed": -1}, "seed must be an integer >= 0, got -1")],
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
    assert np.bincount(va.targets).tolist() == [3, 3, 2, 2]  # 10 by largest remainder, ties to 0, 1
    view = DatasetView(ds, [3, 1])
    assert view.targets == [3, 1] and view[0]["inputs"]["x"].tolist() == [6.0, 7.0]
    with pytest.raises(ValueError, match="by must be"):
        split_dataset(ds, by="speaker")
