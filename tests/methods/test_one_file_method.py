"""A balancing method added in this one file: it registers itself, trains by name from the
command line through ``--plugin`` and a YAML file with an option set by ``--method-opt``,
shows in ``ogmge methods``, resumes bit-identically, evaluates, and passes the contract
that every registered method passes (tests/support/method_contract.py)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ogmge.interfaces.cli import main
from ogmge.methods import BalancingMethod, Option, Space, register
from ogmge.training import TrainConfig, train
from support import method_contract as contract
from support.training_standins import Stop, metric_rows, stop_after

PLUGIN = __name__  # this module, as --plugin imports it


@register
class ScaledFused(BalancingMethod):
    """The fused cross-entropy times a constant factor (a test method, not a paper)."""

    name = "scaled_fused"
    paper = "none (a test of the one-file protocol)"
    options = (Option("factor", float, 2.0, "multiplier of the fused loss", low=0.0, low_open=True,
                      source="this test", space=Space.log_uniform(0.1, 10.0)),)
    tie_rank = 50.0

    def __init__(self, *, factor: float = 2.0) -> None:
        self.factor = factor

    @classmethod
    def build(cls, ctx, **options):
        return cls(**cls.resolve_options(options))

    def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
        total, terms = super().loss(logits, labels, head_logits=head_logits, sample_keep=sample_keep)
        return self.factor * total, terms

    def trace_row(self) -> dict:
        return {"scaled_fused_factor": self.factor}


YAML = {
    "dataset": "builtin",
    "dataset_options": {"regime": "paper", "version": 2, "num_samples": {"train": 24, "val": 8, "test": 8}},
    "model_options": {"hidden": 2, "out_dim": 4}, "optimizer": "sgd", "lr": 0.05, "epochs": 2,
    "patience": None, "batch_size": 8, "device": "cpu", "progress": False, "seed": 1,
    "method": {"name": "scaled_fused"},
}


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(YAML))
    return path


def test_trains_by_name_from_the_cli_with_an_option_and_evaluates(tmp_path, config_file, capsys):
    run = tmp_path / "run"
    assert main(["train", "--plugin", PLUGIN, "--config", str(config_file), "--method-opt", "factor=3",
                 "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["method"] == {"name": "scaled_fused", "factor": 3.0}
    assert saved["method_class"] == f"{PLUGIN}:ScaledFused"
    assert json.loads((run / "results.json").read_text())["method"] == "scaled_fused"
    trace = [json.loads(line) for line in (run / "trace.jsonl").read_text().splitlines()]
    assert trace and all(row["scaled_fused_factor"] == 3.0 for row in trace)
    capsys.readouterr()
    assert main(["eval", "--plugin", PLUGIN, "--checkpoint", str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["train", "--plugin", PLUGIN, "--config", str(config_file), "--method-opt", "factor=-1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "method scaled_fused option factor must be in (0, inf), got -1" in capsys.readouterr().err


def test_listed_by_ogmge_methods(capsys):
    assert main(["methods", "--plugin", PLUGIN]) == 0
    assert "scaled_fused" in capsys.readouterr().out
    assert main(["methods", "--plugin", PLUGIN, "scaled_fused"]) == 0
    out = capsys.readouterr().out
    assert "factor (float, default 2.0)" in out and "log_uniform [0.1, 10]" in out


def test_resumes_bit_identically_from_the_cli(tmp_path, config_file):
    cfg = TrainConfig.load(config_file).replace(method={"name": "scaled_fused", "factor": 0.5})
    full = train(cfg.replace(out=str(tmp_path / "full")))
    with pytest.raises(Stop):
        train(cfg.replace(out=str(tmp_path / "cut")), callbacks=[stop_after(0)])
    assert main(["train", "--plugin", PLUGIN, "--resume", str(tmp_path / "cut")]) == 0
    assert metric_rows(full.run_dir) == metric_rows(tmp_path / "cut")
    a = torch.load(full.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items() if torch.is_tensor(v))


def test_passes_the_contract(tmp_path):
    contract.check_builds_from_defaults("scaled_fused", tmp_path)
    contract.check_bad_options_are_refused("scaled_fused")
    contract.check_one_step_changes_parameters("scaled_fused", tmp_path)
    contract.check_resume_eval_and_trace("scaled_fused", tmp_path)
