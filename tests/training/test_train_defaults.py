"""Defaults that train: ``optimizer``/``patience`` ``auto`` by model builder; early stopping."""

from __future__ import annotations

import pytest

from ogmge.training import TrainConfig, load_run, train
from ogmge.training.factory import build_optimizer


def test_auto_optimizer_and_patience_by_builder():
    cfg = TrainConfig()
    assert cfg.optimizer == "auto" and cfg.patience == "auto"
    assert cfg.resolved_optimizer("generic") == "adam" and cfg.resolved_patience("generic") == 10
    assert cfg.resolved_optimizer("custom") == "adam"
    assert cfg.resolved_optimizer("paper") == "sgd" and cfg.resolved_patience("paper") is None
    assert cfg.replace(optimizer="sgd").resolved_optimizer("generic") == "sgd"
    assert cfg.replace(patience=None).resolved_patience("generic") is None
    assert cfg.replace(val_fraction=0.0).resolved_patience("generic") is None  # nothing to stop on
    import torch

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(cfg, params, builder="generic"), torch.optim.Adam)
    assert isinstance(build_optimizer(cfg, params, builder="paper"), torch.optim.SGD)
    for preset in ("cremad_concat_ogmge", "cremad_concat_normal", "demo", "builtin_cpu"):
        assert TrainConfig.load(preset).optimizer == "sgd"  # presets keep their (the paper's) optimiser
    with pytest.raises(ValueError, match="patience must be an integer >= 1, 'auto' or null, got 'soon'"):
        TrainConfig(patience="soon")
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got 0"):
        TrainConfig(patience=0)


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path):
    # a learning rate too small to change any prediction: validation accuracy never improves on epoch 1
    cfg = TrainConfig(dataset="builtin", dataset_options={"num_samples": {"train": 32, "val": 16, "test": 16},
                                                          "frames": 1},
                      model_options={"hidden": 4, "out_dim": 8}, epochs=6, batch_size=16, lr=1e-12,
                      patience=2, device="cpu", progress=False, out=str(tmp_path / "run"))
    result = train(cfg)
    run = load_run(tmp_path / "run")
    assert [r["epoch"] for r in run.metrics] == [0, 1, 2]  # best epoch 0, then two without improvement
    assert result.best_epoch == 0
    assert run.results["epochs_run"] == 3 and run.results["patience"] == 2
    assert run.results["optimizer"] == "adam"
