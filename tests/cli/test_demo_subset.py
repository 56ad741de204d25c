"""The demo's methods and seeds come from the demo preset's ``compare`` section."""

from __future__ import annotations

import pytest

from ogmge.interfaces.cmd_demo import demo_subset
from ogmge.training import TrainConfig
from ogmge.training.compare.plan import check_candidates
from ogmge.training.config import comparison_section


def test_the_demo_preset_declares_its_comparison_and_loads_as_a_run_config():
    section = comparison_section("demo")
    assert section["seeds"] == [0, 1, 2] and len(section["methods"]) == 3
    assert sorted(check_candidates(section["methods"])) == sorted(section["methods"])  # methods or pairs compare knows
    assert demo_subset() == (section["methods"], [0, 1, 2])
    assert TrainConfig.load("demo").dataset == "builtin"  # the section is set aside, not a setting
    with pytest.raises(ValueError, match=r"unknown settings \['compare'\]"):
        TrainConfig.from_dict({"compare": section})  # a run's saved config never holds it


def test_a_config_of_yours_may_name_its_own_subset_or_take_the_demo_s(tmp_path):
    text = tmp_path / "c.yaml"
    text.write_text("dataset: builtin\nepochs: 2\ncompare: {methods: [normal, mdrop]}\n")
    assert demo_subset(text) == (["normal", "mdrop"], comparison_section("demo")["seeds"])
    assert TrainConfig.load(text).epochs == 2
    plain = tmp_path / "plain.yaml"
    plain.write_text("dataset: builtin\n")
    assert demo_subset(plain) == demo_subset()
    for bad, message in (("compare: [normal]", "must be a mapping"), ("compare: {method: [normal]}", "no setting"),
                         ("compare: {seeds: [-1]}", "integers >= 0"), ("compare: {methods: []}", "non-empty")):
        (tmp_path / "bad.yaml").write_text(bad + "\n")
        with pytest.raises((TypeError, ValueError), match=message):
            comparison_section(tmp_path / "bad.yaml")
