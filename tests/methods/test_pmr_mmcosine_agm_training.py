"""PMR, MMCosine and AGM through the trainer: ``ogmge train --method X`` on bring-your-own data
with three modalities, evaluation, exact resume, and refusals that name the cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main
from ogmge.training import load_checkpoint_file, load_run, train
from ogmge.training.factory import build_model_from_config, method_model_options
from support.training_standins import Stop, metric_rows, stop_after, tiny_bundle, tiny_config

METHODS = ("pmr", "mmcosine", "agm")


def _byo(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    mods = {"a": rng.normal(size=(n, 5)).astype(np.float32) + labels[:, None],
            "b": rng.normal(size=(n, 4)).astype(np.float32) + 0.3 * labels[:, None],
            "c": rng.normal(size=(n, 3)).astype(np.float32)}
    return save_byo(tmp_path / "three.npz", mods, labels, kinds={k: "vector" for k in mods})


@pytest.mark.parametrize("method", METHODS)
def test_cli_trains_on_three_byo_modalities_and_evaluates(tmp_path, method, capsys):
    path = _byo(tmp_path)
    run = tmp_path / method
    assert main(["train", "--data", str(path), "--method", method, "--epochs", "2", "--batch-size", "8",
                 "--lr", "0.01", "--set", "model_options={hidden: 8, out_dim: 8}", "--device", "cpu",
                 "--no-progress", "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == method and results["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    if method == "pmr":
        assert all({"pmr_weak/a", "pmr_weak/b", "pmr_weak/c"} <= set(t) for t in trace)
        assert any(t["pmr_weak/a"] + t["pmr_weak/b"] + t["pmr_weak/c"] >= 1 for t in trace)
    if method == "agm":
        assert all({"agm_coeff/a", "agm_coeff/c", "agm_score/b"} <= set(t) for t in trace)
        assert any(abs(t["agm_coeff/a"] - 1) > 1e-6 for t in trace)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt")]) == 0


def model_fn(bundle, config):
    return build_model_from_config(config, bundle.modalities, bundle.num_classes, builder="generic")[0]


@pytest.mark.parametrize("method", METHODS)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, method):
    def cfg(where):
        spec = {"name": "pmr", "subset": 0.5} if method == "pmr" else method
        return tiny_config(where, method=spec, model_options={"hidden": 8, "out_dim": 8})

    full = train(cfg(tmp_path / "full"), datasets=tiny_bundle(), model=model_fn)
    cut = cfg(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), model=model_fn, callbacks=[stop_after(1)])
    resumed = train(cut, resume=True, datasets=tiny_bundle(), model=model_fn)
    a, b = load_checkpoint_file(full.run_dir / "last.pt"), load_checkpoint_file(resumed.run_dir / "last.pt")
    for k in a["model"]:
        if torch.is_tensor(a["model"][k]):
            assert torch.equal(a["model"][k], b["model"][k]), k
    if method == "pmr":
        for u in a["method"]["prototypes"]:
            assert torch.equal(a["method"]["prototypes"][u], b["method"]["prototypes"][u])
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)


def test_mmcosine_with_a_gated_head_is_refused_naming_it(tmp_path):
    cfg = tiny_config(tmp_path, method="mmcosine", fusion="gated",
                      model_options={"hidden": 8, "out_dim": 8, "fusion_options": {"gate": "a"}})
    with pytest.raises(ValueError, match="GatedFusion"):
        train(cfg, datasets=tiny_bundle(), model=model_fn)


def test_pmr_with_one_modality_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pmr.*2 or more"):
        method_model_options(tiny_config(tmp_path, method="pmr"), 1)
