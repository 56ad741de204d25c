"""The configuration's parts: one table places every setting; differences compare what a run reads."""

from __future__ import annotations

import dataclasses

import pytest

from ogmge.training import TrainConfig, train
from ogmge.training.config import RESUMABLE_CHANGES
from ogmge.training.config_parts import PART_OF, PARTS, check_parts, used_settings
from support.compare_data import tiny_config as tiny_byo
from support.compare_data import tiny_npz
from support.training_standins import tiny_bundle, tiny_config, tiny_model

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def test_every_setting_belongs_to_exactly_one_part():
    listed = [k for keys in PARTS.values() for k in keys]
    assert sorted(listed) == sorted(FIELDS)  # each once, none missing, none extra
    assert set(PART_OF) == set(FIELDS) and set(PART_OF.values()) == {"data", "model", "method", "optimisation", "run"}
    with pytest.raises(RuntimeError, match="new_setting is in no part"):
        check_parts([*FIELDS, "new_setting"])
    with pytest.raises(RuntimeError, match=r"lr \(part optimisation\) is not a setting"):
        check_parts([f for f in FIELDS if f != "lr"])


def test_parts_are_read_only_views_of_the_flat_settings():
    cfg = TrainConfig.load("demo").replace(lr=0.05, method={"name": "ogm_ge", "alpha": 0.4})
    parts = cfg.parts
    assert parts.optimisation.lr == cfg.lr == 0.05 and parts.method.alpha == cfg.alpha == 0.4
    assert parts.data.dataset == "builtin" and parts.data["dataset_options"] == cfg.dataset_options
    assert parts.run.seed == cfg.seed and parts.model.fusion == cfg.fusion
    flat = cfg.to_dict()
    assert list(flat) == FIELDS  # still flat
    assert {k: v for p in parts for k, v in p.items()} == flat
    assert TrainConfig.from_dict(flat) == cfg
    with pytest.raises(AttributeError, match="read-only"):
        parts.optimisation.lr = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError, match="'lr' is in part optimisation"):
        _ = parts.data.lr
    parts.data["dataset_options"]["regime"] = "changed"  # a copy: the configuration is unchanged
    assert cfg.dataset_options["regime"] == "paper"


def test_differences_skip_the_settings_a_run_does_not_read(tmp_path):
    byo = TrainConfig.from_dict(tiny_byo(tiny_npz(tmp_path / "d.npz"), optimizer="adam"))
    assert "split_file" not in used_settings(byo) and "data_root" not in used_settings(byo)
    assert byo.differences(byo.replace(split_file="other.txt", momentum=0.1), ignore=()) == {}
    builtin = TrainConfig.load("demo")
    assert "data" not in used_settings(builtin)
    assert builtin.differences(builtin.replace(split_file="x.txt", data_root="/x"), ignore=()) == {}
    # the built-in data have their own validation split: only whether there is one matters
    assert builtin.differences(builtin.replace(val_fraction=0.3)) == {}
    assert set(builtin.differences(builtin.replace(val_fraction=0))) == {"val_fraction"}
    # defaults resolved: null is the fusion's estimator, the method's prediction, the train batch size
    default = builtin.replace(estimator=None, eval_batch_size=None)
    assert default.differences(default.replace(estimator="linear", eval_batch_size=64)) == {}
    assert set(default.differences(default.replace(estimator="shapley", eval_batch_size=65))) == {
        "estimator", "eval_batch_size"}
    # under SGD momentum is read; every setting as written with unused=True
    diffs = builtin.differences(builtin.replace(momentum=0.5, data_root="/x"))
    assert diffs == {"momentum": (0.9, 0.5)} and diffs.labels() == ["optimisation.momentum"]
    assert set(byo.differences(byo.replace(split_file="x"), ignore=(), unused=True)) == {"split_file"}


def test_differences_are_reported_by_part():
    a = TrainConfig.load("demo")
    diffs = a.differences(a.replace(lr=0.1, width=8, alpha=0.3, dataset_options={"regime": "weak_useless"}))
    assert diffs.by_part() == {"data": {"dataset_options": ({"regime": "paper", "version": 2},
                                                            {"regime": "weak_useless"})},
                               "model": {"width": (64, 8)}, "method": {"alpha": (0.8, 0.3)},
                               "optimisation": {"lr": (0.01, 0.1)}}
    assert diffs.describe("checkpoint", "now").startswith(
        "data.dataset_options: checkpoint {'regime': 'paper', 'version': 2}, now {'regime': 'weak_useless'}; "
        "model.width: checkpoint 64, now 8; method.alpha")
    assert set(RESUMABLE_CHANGES) & set(a.differences(a.replace(epochs=3, device="cuda", out="x"))) == set()


def test_resume_with_a_changed_setting_the_run_does_not_read_continues(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, optimizer="adam")
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    more = train(cfg.replace(epochs=2, momentum=0.2, estimator="linear"), resume=True,
                 datasets=tiny_bundle(), model=tiny_model)
    assert more.start_epoch == 1 and [r["epoch"] for r in more.history] == [0, 1]


def test_resume_with_a_changed_setting_the_run_reads_is_refused_naming_its_part(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, optimizer="adam")
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in optimisation.weight_decay "
                                         r"\(optimisation.weight_decay: checkpoint 0.0001, now 0.01\)"):
        train(cfg.replace(epochs=2, momentum=0.2, weight_decay=0.01), resume=True,
              datasets=tiny_bundle(), model=tiny_model)


def test_the_configuration_table_of_the_docs_lists_each_part_with_its_settings():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    table = text.split("| part | keys", 1)[1].split("\n\n", 1)[0]  # the configuration's table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    for part, keys in PARTS.items():
        assert part in rows, f"docs/training.md has no row for the part {part}"
        missing = [k for k in keys if f"`{k}`" not in rows[part]]
        assert not missing, f"docs/training.md's {part} row misses {missing}"


def test_the_legacy_note_names_the_older_behaviour_of_the_run_s_own_method_only():
    from ogmge.training.config import legacy_note

    saved = {"seed": 0, "device": "cpu", "trace_every": 1, "mdrop_p": 0.5, "mmpareto_scale": 1.5,
             "anchored_weight": 1.0, "opm_q_base": 0.5, "gblend_super_epoch": 2}
    with_opm = legacy_note({**saved, "opm": True})
    assert with_opm is not None and "opm_rescale=per_modality, opm_starts=0" in with_opm
    assert "gblend" not in with_opm
    blend = legacy_note({**saved, "method": "gblend"})
    assert blend is not None and "gblend_estimate=online" in blend and "opm_" not in blend
    assert legacy_note({**saved, "modulation": "Normal"}) is None
    assert legacy_note({**saved, "opm": True, "opm_rescale": "shared", "opm_starts": 6}) is None


def test_a_comparison_rerun_compares_only_the_settings_its_runs_read(tmp_path):
    from ogmge.training.compare.plan import Settings, reconcile

    base = TrainConfig.from_dict(tiny_byo(tiny_npz(tmp_path / "d.npz"), optimizer="adam"))
    out = tmp_path / "cmp"
    out.mkdir()
    Settings(["normal"], [0], None, base).save(out)
    assert reconcile(out, base.replace(split_file="unused.txt", momentum=0.3), ["mdrop"], [1]) == (
        ["normal", "mdrop"], [0, 1])
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.01 there, 0.02 now\)"):
        reconcile(out, base.replace(lr=0.02), [], [])
