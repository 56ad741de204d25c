"""``val_selection``: half A selects, half B is read once at the end; K-fold of train + val."""

from __future__ import annotations

import pytest
import torch

from ogmge.training import DataBundle, TrainConfig, train
from ogmge.training.selection import PooledDataset, kfold, select_validation, stratified_halves
from support.training_standins import TinyDataset, tiny_config, tiny_model


def test_half_a_selects_and_half_b_is_scored_once_at_the_end(tmp_path):
    bundle = DataBundle(TinyDataset(48, 1), TinyDataset(20, 2), TinyDataset(30, 3))
    cfg = tiny_config(tmp_path, val_selection={"half": "A", "seed": 5, "holdout": True}, out=None)
    res = train(cfg, datasets=bundle, model=tiny_model)
    _, held = select_validation(bundle, cfg.val_selection)
    b = list(held.indices)
    a = sorted(set(range(20)) - set(b))
    model = res.model.eval()
    val = bundle.val
    with torch.no_grad():
        pred = model({"a": val.a, "b": val.b}).logits.argmax(1)
    acc_b = float((pred[b] == val.labels[b]).double().mean())
    acc_a = float((pred[a] == val.labels[a]).double().mean())
    assert res.holdout_metrics is not None
    assert res.holdout_metrics["acc"] == pytest.approx(acc_b, abs=1e-12)
    assert res.val_metrics["acc"] == pytest.approx(acc_a, abs=1e-12)  # the selected epoch's score is half A's


def test_halves_are_disjoint_stratified_and_seeded():
    targets = [0] * 7 + [1] * 4 + [2] * 9
    a, b = stratified_halves(targets, seed=3)
    assert sorted(a + b) == list(range(20)) and not set(a) & set(b)
    assert abs(len(a) - len(b)) <= 1
    for c in (0, 1, 2):
        assert abs(sum(targets[i] == c for i in a) - sum(targets[i] == c for i in b)) <= 1
    assert (a, b) == stratified_halves(targets, seed=3) and (a, b) != stratified_halves(targets, seed=4)


def test_without_holdout_the_other_half_is_never_evaluated(tmp_path):
    bundle = DataBundle(TinyDataset(48, 1), TinyDataset(20, 2), TinyDataset(30, 3))
    res = train(tiny_config(tmp_path, val_selection={"half": "A"}, out=None), datasets=bundle, model=tiny_model)
    assert res.holdout_metrics is None


def test_kfold_keeps_groups_whole_and_covers_every_sample():
    groups = [f"g{i % 7}" for i in range(40)]
    targets = [i % 3 for i in range(40)]
    folds = kfold(targets, groups, 3, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(40))
    for f in folds:
        assert f
        for other in folds:
            if other is not f:
                assert not {groups[i] for i in f} & {groups[i] for i in other}


def test_kfold_without_groups_is_stratified():
    targets = [i % 3 for i in range(30)]
    folds = kfold(targets, None, 5, seed=0)
    for f in folds:
        assert sorted(targets[i] for i in f) == [0, 0, 1, 1, 2, 2]


def test_fold_validation_pools_train_and_val_and_leaves_test():
    bundle = DataBundle(TinyDataset(24, 1), TinyDataset(6, 2), TinyDataset(9, 3))
    out, held = select_validation(bundle, {"folds": 3, "fold": 1, "seed": 0})
    assert held is None and out.test is bundle.test
    assert len(out.train) + len(out.val) == 30
    pooled = PooledDataset([bundle.train, bundle.val])
    assert pooled[24]["label"] == bundle.val[0]["label"]


@pytest.mark.parametrize("bad", [{"half": "C"}, {"folds": 3}, {"folds": 1, "fold": 0}, {"holdout": True},
                                 {"fold": 3, "folds": 3}, {"x": 1}])
def test_bad_val_selection_refused_naming_it(bad):
    with pytest.raises(ValueError, match="val_selection"):
        TrainConfig(val_selection=bad)
