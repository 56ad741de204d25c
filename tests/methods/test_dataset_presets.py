"""Each method's own defaults with their sources, its presets per paper dataset, and the
authors' schedule: declared once on the method, checked at registration, applied by the
configuration where the user did not set the option, recorded so resume is exact."""

from __future__ import annotations

import argparse

import pytest

from ogmge import methods
from ogmge.interfaces.cli import main
from ogmge.interfaces.config_cli import add_config_flags, config_from_args
from ogmge.methods import BalancingMethod, Option, Preset, register
from ogmge.methods.registry import PRESET_DATASETS, dataset_preset
from ogmge.training.compare.plan import PlannedRun, base_config, run_config
from ogmge.training.compare.tuning import default_value
from ogmge.training.config import PAPER_DATASETS, TrainConfig, method_notes


def _method(name, **attrs):
    body = {"name": name, "paper": "none (a test)", "tie_rank": 90.0,
            "options": (Option("w", float, 1.0, "a weight", low=0.0, source="a test"),), **attrs}
    return type(name.title(), (BalancingMethod,), body)


# ------------------------------------------------------------------ declarations
def test_every_option_and_preset_names_its_source():
    for name in methods.names():
        cls = methods.get(name)
        for o in cls.options:
            assert o.source.strip(), f"{name}.{o.name} has no source"
            assert not o.source.startswith(("ours", "the authors' released code")), f"{name}.{o.name}: {o.source}"
        for dataset, preset in cls.dataset_presets.items():
            assert dataset in PRESET_DATASETS and preset.source.strip()
            cls.resolve_options(preset.options)  # every value passes the option's own checks
        if cls.authors_schedule is not None:
            assert cls.authors_schedule["source"].strip()
    assert set(PRESET_DATASETS) <= set(PAPER_DATASETS)
    assert "this project" in next(o.source for o in methods.get("mdrop").options if o.name == "p")
    scale = next(o for o in methods.get("mmpareto").options if o.name == "scale")
    assert scale.source.startswith("GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py:178")


@pytest.mark.parametrize("presets, match", [
    ({"imagenet": Preset({"w": 2.0}, source="x")}, "unknown dataset 'imagenet'"),
    ({"ave": Preset({"v": 2.0}, source="x")}, "no option 'v'"),
    ({"ave": Preset({"w": -1.0}, source="x")}, r"option w must be in \[0, inf\), got -1.0"),
    ({"ave": {"w": 2.0}}, "must be a Preset"),
])
def test_a_bad_preset_is_an_error_at_registration(presets, match):
    with pytest.raises((ValueError, TypeError), match=match):
        register(_method("bad_preset_method", dataset_presets=presets))
    assert not methods.registry.is_registered("bad_preset_method")


def test_a_preset_and_a_schedule_need_a_source():
    with pytest.raises(ValueError, match="needs a source"):
        Preset({"w": 2.0}, source=" ")
    with pytest.raises(ValueError, match="authors_schedule must be a mapping with a source"):
        register(_method("bad_schedule_method", authors_schedule={"lr": 0.1}))
    with pytest.raises(ValueError, match=r"unknown keys \['momentum'\]"):
        register(_method("bad_schedule_method", authors_schedule={"momentum": 0.9, "source": "x"}))


def test_chains_carry_their_members_presets_under_their_option_names():
    chain = methods.get("ogm_ge+opm")
    preset = dataset_preset(chain, "vggsound")
    assert preset is not None and preset.options == {"alpha": 0.1} and preset.source.startswith("ogm_ge: ")
    assert dataset_preset(chain, "cremad") is None


# ------------------------------------------------------------------ resolution
def test_the_preset_applies_on_its_dataset_and_nowhere_else():
    on = TrainConfig(method="ogm_ge", dataset="vggsound")
    assert on.alpha == 0.1 and on.method_options["alpha"] == 0.1
    assert on.method_preset == {"method": "ogm_ge", "dataset": "vggsound", "options": {"alpha": 0.1},
                                "source": methods.get("ogm_ge").dataset_presets["vggsound"].source}
    for dataset in ("cremad", "kinetics_sounds", "ave", "builtin"):
        off = TrainConfig(method="ogm_ge", dataset=dataset)
        assert off.alpha == 0.8 and off.method_preset == {}
    assert TrainConfig(method="mcr", dataset="ave").method_options["l"] == 0.01
    assert TrainConfig(method="mcr", dataset="cremad").method_options["l"] == 0.1
    ks = TrainConfig(method="midas", dataset="kinetics_sounds").method_options
    assert (ks["mixed_weight"], ks["alpha_max"], ks["warmup"]) == (5.0, 10.0, None)
    # the paper's flags alone (method: null, modulation OGM_GE) mean ogm_ge: its preset too
    derived = TrainConfig(dataset="vggsound")
    assert derived.method is None and derived.alpha == 0.1


def test_an_explicit_option_wins():
    assert TrainConfig(method={"name": "ogm_ge", "alpha": 0.8}, dataset="vggsound").alpha == 0.8
    assert TrainConfig(method="ogm_ge", dataset="vggsound", alpha=0.3).alpha == 0.3
    explicit = TrainConfig(method={"name": "mcr", "l": 0.1}, dataset="ave")
    assert explicit.method_options["l"] == 0.1 and explicit.method_preset == {}
    partly = TrainConfig(method={"name": "midas", "alpha_max": 4.0}, dataset="kinetics_sounds")
    assert (partly.method_options["alpha_max"], partly.method_options["mixed_weight"]) == (4.0, 5.0)
    assert partly.method_preset["options"] == {"mixed_weight": 5.0}
    off = TrainConfig(method="ogm_ge", dataset="vggsound", method_preset=None)  # presets off
    assert off.alpha == 0.8 and off.method_preset is None


def test_the_saved_config_resumes_exactly_and_a_new_dataset_rederives():
    cfg = TrainConfig(method="mcr", dataset="ave")
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and not cfg.differences(again)
    moved = cfg.replace(dataset="cremad")  # the preset's value was not the user's: it follows the dataset
    assert moved.method_options["l"] == 0.1 and moved.method_preset == {}
    tuned = cfg.replace(method={**cfg.method, "l": 0.05})  # a value changed since: the user's
    assert tuned.method_options["l"] == 0.05 and tuned.method_preset == {}
    ogm = TrainConfig(method="ogm_ge", dataset="vggsound")
    assert ogm.replace(method="normal").alpha == 0.8  # the flat flag goes back with the method
    assert ogm.replace(method="ogm").alpha == 0.1


def test_a_config_saved_before_presets_resumes_without_them():
    saved = TrainConfig(method="ogm_ge", dataset="vggsound", method_preset=None).to_dict()
    del saved["method_preset"]  # what a run saved before presets existed holds
    old = TrainConfig.from_dict(saved)
    assert old.alpha == 0.8 and old.method_preset is None
    user = TrainConfig.from_dict({"method": "ogm_ge", "dataset": "vggsound"})  # a user's YAML: presets apply
    assert user.alpha == 0.1


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return parser.parse_args(list(argv))


def test_command_line_options_and_config_files(tmp_path):
    assert config_from_args(_args("--method", "ogm_ge", "--dataset", "vggsound")).alpha == 0.1
    assert config_from_args(_args("--method", "ogm_ge", "--dataset", "vggsound",
                                  "--method-opt", "alpha=0.8")).alpha == 0.8
    # a file's method mapping with the dataset given on the command line: the file's options win,
    # the options it left out take the new dataset's preset
    path = tmp_path / "mcr.yaml"
    path.write_text("dataset: cremad\nmethod: {name: mcr, multil: 0.02}\n")
    cfg = config_from_args(_args("--config", str(path), "--dataset", "ave"))
    assert (cfg.method_options["l"], cfg.method_options["multil"]) == (0.01, 0.02)
    path.write_text("dataset: cremad\nmethod: {name: mcr, l: 0.1}\n")
    assert config_from_args(_args("--config", str(path), "--dataset", "ave")).method_options["l"] == 0.1


def test_compare_and_the_tuner_start_from_each_methods_preset(tmp_path):
    base = base_config(TrainConfig(dataset="vggsound", data_root=str(tmp_path)), {})
    runs = {m: run_config(base, PlannedRun(m, 0), tmp_path) for m in ("normal", "ogm", "ogm_ge", "mdrop")}
    assert {m: c.alpha for m, c in runs.items()} == {"normal": 0.8, "ogm": 0.1, "ogm_ge": 0.1, "mdrop": 0.8}
    user = run_config(base, PlannedRun("ogm_ge", 0, options=(("alpha", 0.5),)), tmp_path)
    assert user.alpha == 0.5
    ave = base_config(TrainConfig(dataset="ave", data_root=str(tmp_path)), {})
    assert run_config(ave, PlannedRun("mcr", 0), tmp_path).method_options["l"] == 0.01
    assert default_value(ave, "method.l", "paper", "mcr") == 0.01
    assert default_value(base_config(TrainConfig(), {}), "method.l", "generic", "mcr") == 0.1


# ------------------------------------------------------------------ what a user sees
def test_ogmge_methods_lists_the_presets_with_their_sources(capsys):
    assert main(["methods", "ogm_ge"]) == 0
    out = capsys.readouterr().out
    assert "dataset presets" in out and "vggsound: alpha=0.1 (GeWu-Lab/OGM-GE_CVPR2022 README.md:151" in out
    assert "authors' schedule (informative; runs use the shared one): sgd, lr 0.001, 100 epochs" in out
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "dataset presets: vggsound" in listing and "dataset presets: ave" in listing


def test_a_run_on_a_paper_dataset_says_which_schedule_and_preset_it_uses():
    notes = method_notes(TrainConfig(method="opm", dataset="cremad"))
    assert notes == ["schedule: the shared one (lr, optimizer, epochs from the config); the authors used adamw, "
                     "lr 5e-05, 100 epochs, batch 32, decay x0.1 every 40 epochs, weight decay 0.01 "
                     "(GeWu-Lab/BML_TPAMI2024 code/config.py:22-29, main.py:267-268) for this method"]
    ogm = method_notes(TrainConfig(method="ogm_ge", dataset="vggsound"))
    assert ogm[0].startswith("method preset: ogm_ge on vggsound uses alpha=0.1, the authors' setting there")
    assert "declares no authors' schedule" in method_notes(TrainConfig(method="mdrop", dataset="ave"))[0]
    assert method_notes(TrainConfig(method="opm")) == []  # built-in data: nothing to say


def test_differences_compare_the_values_not_the_record():
    old = TrainConfig(method="mcr", method_preset=None)  # e.g. a comparison stored before presets
    assert old.differences(TrainConfig(method="mcr")) == {}
    assert TrainConfig(method="mcr", dataset="ave").differences(TrainConfig(method="mcr", dataset="ave",
                                                                            method_preset=None))["method"]
