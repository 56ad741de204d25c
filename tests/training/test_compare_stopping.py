"""A comparison keeps the early-stopping rule it began with: compare.yaml records it, an old
compare.yaml without it takes it from the finished runs, and a mix of rules is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ogmge.interfaces.compare_report import compare
from ogmge.training import TrainConfig
from ogmge.training.compare import SETTINGS
from ogmge.training.compare.plan import recorded_rules
from ogmge.training.stopping import LEGACY, resolve
from support.compare_data import tiny_config, tiny_npz


def run_cmp(data, out, methods=("normal",), seeds=(0,)):
    return compare(tiny_config(data), out=out, methods=list(methods), seeds=list(seeds), jobs=1, echo=None,
                   progress=False)


def run_rules(out: Path) -> dict[str, str]:
    """``{run: stopping rule}`` as each run's config.yaml records it (none recorded: ``LEGACY``)."""
    return {p.parent.relative_to(out).as_posix(): yaml.safe_load(p.read_text()).get("stopping", LEGACY)
            for p in sorted(out.glob("*/seed-*/config.yaml"))}


def make_old(out: Path, rule: str | None) -> None:
    """As a comparison written before compare.yaml recorded the rule, whose runs ran ``rule``
    (None: before rules had names, no ``stopping`` in the run's config: raw_v1)."""
    settings = yaml.safe_load((out / SETTINGS).read_text())
    settings.pop("stopping_rule")
    (out / SETTINGS).write_text(yaml.safe_dump(settings, sort_keys=False))
    for path in out.glob("*/seed-*/config.yaml"):
        values = yaml.safe_load(path.read_text())
        if rule is None:
            values.pop("stopping")
        else:
            values["stopping"] = rule
        path.write_text(yaml.safe_dump(values, sort_keys=False))


@pytest.fixture
def data(tmp_path):
    return tiny_npz(tmp_path / "d.npz")


def test_a_new_comparison_records_the_rule_its_runs_resolve_to(data, tmp_path):
    out = tmp_path / "cmp"
    summary = run_cmp(data, out)
    today = resolve("auto", "generic")
    assert today == "smoothed_v1"  # the premise of the tests below: today's rule is not the old one
    assert yaml.safe_load((out / SETTINGS).read_text())["stopping_rule"] == today
    assert set(run_rules(out).values()) == {today} and len(run_rules(out)) == 3
    assert summary["schedule"]["stopping"] == today
    assert TrainConfig.load(out / "normal/seed-0/config.yaml").stopping == today


@pytest.mark.parametrize("old", [None, "raw_v1"])
def test_an_old_comparison_extended_trains_the_new_runs_with_its_runs_rule(data, tmp_path, old):
    out = tmp_path / "cmp"
    run_cmp(data, out)
    make_old(out, old)
    assert recorded_rules(out) == {"raw_v1": ["normal/seed-0", "only-a/seed-0", "only-b/seed-0"]}
    summary = run_cmp(data, out, methods=("normal", "ogm_ge"), seeds=(0, 1))  # a new method and a new seed
    rules = run_rules(out)
    assert len(rules) == 8
    new = {k: v for k, v in rules.items() if k not in ("normal/seed-0", "only-a/seed-0", "only-b/seed-0")}
    assert new == {k: "raw_v1" for k in ("normal/seed-1", "ogm_ge/seed-0", "ogm_ge/seed-1", "only-a/seed-1",
                                         "only-b/seed-1")}
    # from now on compare.yaml says so
    assert yaml.safe_load((out / SETTINGS).read_text())["stopping_rule"] == "raw_v1"
    assert summary["schedule"]["stopping"] == "raw_v1"
    assert yaml.safe_load((out / "ogm_ge/seed-1/results.json").read_text())["stopping"]["rule"] == "raw_v1"


def test_an_old_comparison_whose_runs_mix_rules_is_refused_naming_them(data, tmp_path):
    out = tmp_path / "cmp"
    run_cmp(data, out)
    make_old(out, "raw_v1")
    path = out / "only-b/seed-0/config.yaml"
    path.write_text(path.read_text().replace("stopping: raw_v1", "stopping: smoothed_v1"))
    before = (out / SETTINGS).read_text()
    with pytest.raises(ValueError) as err:
        run_cmp(data, out, seeds=(0, 1))
    text = str(err.value)
    assert (f"{out}: its runs were trained with different early-stopping rules (a comparison made across ogmge "
            "versions) (raw_v1: normal/seed-0, only-a/seed-0; smoothed_v1: only-b/seed-0); a comparison averages "
            "and compares runs of one rule: delete the runs of one rule") in text
    assert text.endswith("or use another --out")
    assert (out / SETTINGS).read_text() == before and not (out / "normal/seed-1").exists()  # nothing trained
    # following the advice: the smoothed run deleted, it is retrained with raw_v1
    shutil.rmtree(out / "only-b/seed-0")
    run_cmp(data, out)
    assert set(run_rules(out).values()) == {"raw_v1"} and len(run_rules(out)) == 3


def test_a_run_whose_rule_differs_from_the_recorded_one_is_refused(data, tmp_path):
    out = tmp_path / "cmp"
    run_cmp(data, out)
    path = out / "normal/seed-0/config.yaml"
    path.write_text(path.read_text().replace("stopping: smoothed_v1", "stopping: raw_v1"))
    with pytest.raises(ValueError, match=r"its compare.yaml records the early-stopping rule smoothed_v1, but runs "
                                         r"were trained with another \(raw_v1: normal/seed-0; smoothed_v1: "
                                         r"only-a/seed-0, only-b/seed-0\); .*delete the runs not trained with "
                                         r"smoothed_v1"):
        run_cmp(data, out, seeds=(0, 1))


def test_a_compare_yaml_naming_an_unknown_rule_is_a_settings_error(data, tmp_path):
    out = tmp_path / "cmp"
    run_cmp(data, out)
    text = (out / SETTINGS).read_text().replace("stopping_rule: smoothed_v1", "stopping_rule: smoothed_v9")
    (out / SETTINGS).write_text(text)
    with pytest.raises(ValueError, match=r"is not a comparison's settings file \(stopping_rule 'smoothed_v9' is "
                                         r"not one of this version's rules"):
        run_cmp(data, out)


def test_a_tuned_comparison_records_the_rule_and_a_rerun_keeps_its_final_runs(data, tmp_path, capsys):
    """The final runs are planned with the recorded rule, the one their config.yaml holds: a rerun
    finds them current (not stale) and trains nothing again."""
    from ogmge.interfaces.cli import main

    out = tmp_path / "cmp"
    args = ["compare", "--data", str(data), "--methods", "normal", "--seeds", "0", "--epochs", "1", "--batch-size",
            "8", "--device", "cpu", "--set", "model_options={hidden: 4, out_dim: 8}", "--no-progress",
            "--jobs", "1", "--out", str(out), "--tune", "1", "--tune-shared", "none", "--cv", "0"]
    assert main(args) == 0
    assert yaml.safe_load((out / SETTINGS).read_text())["stopping_rule"] == "smoothed_v1"
    finals = sorted(out.rglob("results.json"))
    assert finals and {yaml.safe_load((p.parent / "config.yaml").read_text())["stopping"] for p in finals} == {
        "smoothed_v1"}
    stamps = {p: p.stat().st_mtime_ns for p in finals}
    capsys.readouterr()
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in sorted(out.rglob("results.json"))} == stamps
