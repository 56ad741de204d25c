"""TrainConfig validation and YAML; evaluation metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ogmge.training import TrainConfig, cli_flag, holdout, yaml_key
from ogmge.training.data import EpochSampler
from ogmge.training.metrics import average_precision, classification_metrics, macro_f1


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("alpha", 0.0, r"alpha must be a finite number > 0, got 0.0"),
        ("alpha", float("nan"), r"alpha must be a finite number"),
        ("modulation", "OGMGE", r"modulation must be one of \['Normal', 'OGM', 'OGM_GE'\], got 'OGMGE'"),
        ("fusion", "max", r"fusion must be one of .* got 'max'"),
        ("optimizer", "rmsprop", r"optimizer must be one of .* got 'rmsprop'"),
        ("epochs", 0, r"epochs must be an integer >= 1, got 0"),
        ("batch_size", 2.5, r"batch_size must be an integer >= 1, got 2.5"),
        ("val_fraction", 1.0, r"val_fraction must be a finite number in \[0, 1\), got 1.0"),
        ("modulate_params", "convs", r"modulate_params must be one of .* got 'convs'"),
        ("modulation_ends", -1, r"modulation_ends must be an integer >= 0, got -1"),
    ],
)
def test_validation_names_field_and_value(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**{field: value})


def test_window_order_and_byo_checks():
    with pytest.raises(ValueError, match=r"modulation_ends \(2\) must not be before modulation_starts \(5\)"):
        TrainConfig(modulation_starts=5, modulation_ends=2)
    with pytest.raises(ValueError, match="needs data"):
        TrainConfig(dataset="byo")
    assert TrainConfig(modalities="audio, visual").modalities == ["audio", "visual"]


def test_yaml_round_trip_and_names(tmp_path):
    cfg = TrainConfig(alpha=0.3, modulation_ends=None, modalities=["audio"], dataset_options={"frames": 2})
    path = cfg.save(tmp_path / "c.yaml")
    assert TrainConfig.load(path) == cfg
    assert "modulation_starts: 0" in path.read_text()
    assert cli_flag("modulation_starts") == "--modulation-starts"
    assert yaml_key("--modulation-starts") == "modulation_starts"
    with pytest.raises(ValueError, match=r"unknown settings \['modulation-starts'\].*'modulation_starts'"):
        TrainConfig.from_dict({"modulation-starts": 1})


def test_differences_ignore_resumable_settings():
    a = TrainConfig(epochs=2, device="cpu")
    b = a.replace(epochs=4, device="auto", out="x", alpha=0.2)
    assert a.differences(b) == {"alpha": (0.8, 0.2)}


def test_holdout_is_seeded_stratified_or_by_group():
    class DS:
        targets = [0] * 20 + [1] * 10
        groups = None

    rest, held = holdout(DS(), 0.2, seed=1)
    assert sorted(rest + held) == list(range(30))
    assert sum(DS.targets[i] == 0 for i in held) == 4 and sum(DS.targets[i] == 1 for i in held) == 2
    assert holdout(DS(), 0.2, seed=1) == (rest, held)
    assert holdout(DS(), 0.2, seed=2) != (rest, held)
    DS.groups = [f"g{i // 5}" for i in range(30)]
    rest, held = holdout(DS(), 0.2, seed=1)
    held_groups = {DS.groups[i] for i in held}
    assert len(held) == 5 and not held_groups & {DS.groups[i] for i in rest}  # floor(0.2 * 6 + 1/2) groups


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    first = list(s)
    t = EpochSampler(10, seed=3)
    t.set_epoch(2)
    assert list(t) == first and sorted(first) == list(range(10))
    t.set_epoch(3)
    assert list(t) != first
    shards = []
    for rank in range(3):
        r = EpochSampler(10, seed=3, rank=rank, world_size=3)
        r.set_epoch(2)
        shards.append(list(r))
    assert all(len(x) == 4 for x in shards) and set(sum(shards, [])) == set(range(10))


def test_average_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    positives = np.array([True, False, True, False])
    # precision at the positives: 1/1 and 2/3
    assert average_precision(scores, positives) == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)


def test_macro_f1_and_per_class_by_hand():
    labels = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fp0 fn1 -> 0
    assert macro_f1(pred, labels, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3, abs=1e-12)
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), 3).float() * 5
    m = classification_metrics(logits, torch.as_tensor(labels))
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["per_class_acc"] == [0.5, 1.0, 0.0]
