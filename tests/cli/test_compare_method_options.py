"""``ogmge compare --method-opt METHOD.KEY=VALUE``: one compared method's options, recorded,
applied to its runs only, kept on rerun, refused when malformed; the summary says the schedule."""

from __future__ import annotations

import json

import pytest
import yaml

from ogmge.interfaces.cli import main
from ogmge.interfaces.config_cli import parse_compare_method_opts
from ogmge.training.compare.plan import Plan, PlannedRun, check_method_options, run_config
from ogmge.training.compare.tuning import Candidate, apply_params, candidate_space
from ogmge.training.config import TrainConfig
from support.compare_data import tiny_npz

FLAGS = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--set", "model_options={hidden: 4, out_dim: 8}",
         "--no-progress", "--no-plot", "--seeds", "0", "--jobs", "1"]


def test_parse_names_method_option_and_value():
    assert parse_compare_method_opts(["ogm_ge.alpha=0.3", "pmr.alpha=2", "ogm_ge.start_epoch=1"]) == {
        "ogm_ge": {"alpha": 0.3, "start_epoch": 1}, "pmr": {"alpha": 2.0}}
    with pytest.raises(ValueError, match=r"METHOD\.KEY=VALUE"):
        parse_compare_method_opts(["alpha=0.3"])
    with pytest.raises(ValueError, match="method ogm_ge has no option 'beta'"):
        parse_compare_method_opts(["ogm_ge.beta=1"])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        parse_compare_method_opts(["nope.alpha=1"])
    with pytest.raises(ValueError, match=r"option alpha must be in \(0, inf\), got -1"):
        parse_compare_method_opts(["ogm_ge.alpha=-1"])


def test_options_must_name_a_compared_method():
    with pytest.raises(ValueError, match="'pmr', which is not compared"):
        check_method_options({"pmr": {"alpha": 2.0}}, ["normal", "ogm_ge"])
    assert check_method_options(None, ["normal"]) == {}


def test_options_reach_only_their_method_runs(tmp_path):
    base = TrainConfig(dataset="builtin")
    plan = Plan.build(tmp_path, base, ["normal", "ogm_ge", "pmr"], [0, 1], ["audio", "visual"],
                      {"ogm_ge": {"alpha": 0.3}})
    configs = {(r.method, r.seed, r.modality): plan.config_of(r) for r in plan.runs}
    for seed in (0, 1):
        assert configs[("ogm_ge", seed, None)].method_options["alpha"] == 0.3
        assert configs[("pmr", seed, None)].method_options["alpha"] == 1.0  # its own default
    assert configs[("normal", 0, "audio")].resolved_method == "normal"
    # the run key does not depend on the options (a run's directory stays where it was)
    assert PlannedRun("ogm_ge", 0, options=(("alpha", 0.3),)).key == PlannedRun("ogm_ge", 0).key


def test_tuning_keeps_a_fixed_option_out_of_the_search():
    base = TrainConfig(dataset="builtin")
    searched = {p.key for p in candidate_space("pmr", base, builder="generic", tune_shared="none")}
    assert "method.alpha" in searched
    fixed = {p.key for p in candidate_space("pmr", base, builder="generic", tune_shared="none", fixed=["alpha"])}
    assert "method.alpha" not in fixed and fixed == searched - {"method.alpha"}
    cand = Candidate("pmr", options=(("alpha", 2.5),))
    cfg = apply_params(run_config(base, cand.planned(0), "unused"), {"method.momentum": 0.5})
    assert cfg.method_options["alpha"] == 2.5 and cfg.method_options["momentum"] == 0.5


def test_compare_cli_records_applies_and_refuses_a_changed_option(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(data), *FLAGS, "--methods", "ogm_ge", "--out", str(out)]
    assert main([*args, "--method-opt", "ogm_ge.alpha=0.3"]) == 0
    stored = yaml.safe_load((out / "compare.yaml").read_text())
    assert stored["method_options"] == {"ogm_ge": {"alpha": 0.3}}
    run = yaml.safe_load((out / "ogm_ge" / "seed-0" / "config.yaml").read_text())
    assert run["method"] == {"name": "ogm_ge", "alpha": 0.3} or run["alpha"] == 0.3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_options"] == {"ogm_ge": {"alpha": 0.3}}
    assert summary["schedule"]["epochs"] == 1 and summary["schedule"]["batch_size"] == 8
    md = (out / "summary.md").read_text()
    assert "compare keeps the shared one" in md and "ogm_ge: alpha=0.3" in md
    capsys.readouterr()
    # the same command continues; another value for the option is refused, naming both
    assert main([*args, "--method-opt", "ogm_ge.alpha=0.3"]) == 0
    capsys.readouterr()
    assert main([*args, "--method-opt", "ogm_ge.alpha=0.5"]) == 2
    err = capsys.readouterr().err
    assert "ogm_ge: {'alpha': 0.3} there, {'alpha': 0.5} now" in err
    assert main([*args]) == 2  # dropping the option changes the runs too
    assert "{'alpha': 0.3} there, {} now" in capsys.readouterr().err
