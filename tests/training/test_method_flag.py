"""``method`` and the paper's flags (``modulation``, ``opm``): one meaning, or an error naming both."""

import argparse

import pytest

from ogmge.interfaces.config_cli import add_config_flags, config_from_args
from ogmge.training.config import TrainConfig


def _cli(*argv):
    p = argparse.ArgumentParser()
    add_config_flags(p)
    return config_from_args(p.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("method", "modulation", "opm"),
    [("normal", "Normal", False), ("ogm", "OGM", False), ("ogm_ge", "OGM_GE", False), ("opm", "Normal", True),
     ("gblend", "Normal", False)],
)
def test_method_sets_the_paper_flags(method, modulation, opm):
    cfg = TrainConfig(method=method)
    assert (cfg.modulation, cfg.opm, cfg.resolved_method) == (modulation, opm, method)
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()  # round trip


def test_method_null_derives_from_the_paper_flags():
    assert TrainConfig().resolved_method == "ogm_ge"
    assert TrainConfig(modulation="Normal", opm=True).resolved_method == "opm"
    assert TrainConfig(modulation="OGM", opm=True).resolved_method == "ogm+opm"


def test_contradiction_names_both():
    with pytest.raises(ValueError, match="method 'opm'.*modulation"):
        TrainConfig(method="opm", modulation="OGM")
    with pytest.raises(ValueError, match="method 'normal'.*opm"):
        TrainConfig(method="normal", opm=True)
    with pytest.raises(ValueError, match="unknown method 'bogus'; registered methods"):
        TrainConfig(method="bogus")


def test_cli_method_overrides_a_presets_paper_flags_unless_given():
    assert _cli("--method", "opm").opm is True
    assert _cli("--config", "builtin_cpu", "--method", "normal").modulation == "Normal"
    assert _cli("--modulation", "Normal", "--opm").resolved_method == "opm"
    with pytest.raises(ValueError, match="modulation"):
        _cli("--method", "ogm", "--modulation", "OGM_GE")
