"""PMR, MMCosine and AGM through the trainer: ``ogmge train --method X`` on bring-your-own data
with three modalities, evaluation, exact resume, and refusals that name the cause."""

from __future__ import annotations

import pytest
import torch

from ogmge.training import load_run, train
from ogmge.training.factory import method_model_options
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import (
    generic_model,
    resumed_equals_uninterrupted,
    tiny_bundle,
    tiny_config,
)

METHODS = ("pmr", "mmcosine", "agm")


@pytest.mark.parametrize("method", METHODS)
def test_cli_trains_on_three_byo_modalities_and_evaluates(tmp_path, method, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / method
    assert train_cli(path, method, run, epochs=2) == 0
    assert results(run)["method"] == method and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    if method == "pmr":
        assert all({"pmr_weak/a", "pmr_weak/b", "pmr_weak/c"} <= set(t) for t in trace)
        assert any(t["pmr_weak/a"] + t["pmr_weak/b"] + t["pmr_weak/c"] >= 1 for t in trace)
    if method == "agm":
        assert all({"agm_coeff/a", "agm_coeff/c", "agm_score/b"} <= set(t) for t in trace)
        assert any(abs(t["agm_coeff/a"] - 1) > 1e-6 for t in trace)
    capsys.readouterr()
    assert evaluates(run / "best.pt")


@pytest.mark.parametrize("method", METHODS)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, method):
    def cfg(where):
        spec = {"name": "pmr", "subset": 0.5} if method == "pmr" else method
        return tiny_config(where, method=spec, model_options={"hidden": 8, "out_dim": 8})

    _, _, a, b = resumed_equals_uninterrupted(cfg, tmp_path, model=generic_model)
    if method == "pmr":
        for u in a["method"]["prototypes"]:
            assert torch.equal(a["method"]["prototypes"][u], b["method"]["prototypes"][u])


def test_mmcosine_with_a_gated_head_is_refused_naming_it(tmp_path):
    cfg = tiny_config(tmp_path, method="mmcosine", fusion="gated",
                      model_options={"hidden": 8, "out_dim": 8, "fusion_options": {"gate": "a"}})
    with pytest.raises(ValueError, match="GatedFusion"):
        train(cfg, datasets=tiny_bundle(), model=generic_model)


def test_pmr_with_one_modality_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pmr.*2 or more"):
        method_model_options(tiny_config(tmp_path, method="pmr"), 1)
