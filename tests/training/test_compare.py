"""``ogmge.compare``: run layout, summary = the runs' results.json, reruns, resume, selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ogmge.interfaces.compare_report import compare
from ogmge.interfaces.compare_report import report_of as summarize
from ogmge.training import TrainConfig, load_run, train
from ogmge.training.compare import (
    SETTINGS,
    PlannedRun,
    RegimeLine,
    Settings,
    neutral_config,
    run_config,
)
from support.compare_data import tiny_config, tiny_npz

#: Fields that measure time or how the runs were executed, not what they computed.
TIMING_FIELDS = ("seconds", "relative_seconds", "jobs", "threads_per_run")


def strip_timing(value):
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "/seed-" in str(p)}


def test_summary_equals_runs_and_rerun_retrains_nothing(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    lines: list[str] = []
    summary = compare(tiny_config(data), out=out, methods=["ogm_ge"], seeds=[0, 1], jobs=1, echo=lines.append,
                      progress=False)
    assert lines[0].startswith("ogmge compare: 8 runs (2 methods + 2 modalities alone, x 2 seeds [0, 1])")
    assert "estimate: about" in lines[1]
    assert sum(": val " in line and ", test " in line for line in lines) == 8
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert (out / "summary.md").read_text().count("\n| ") >= 5
    assert set(on_disk) >= {"seeds", "methods", "unimodal", "selected", "best_unimodal", "fused_below_best_unimodal"}
    assert on_disk["seeds"] == [0, 1] and list(on_disk["methods"]) == ["normal", "ogm_ge"]
    assert on_disk["modalities"] == ["a", "b"]
    for method, entry in on_disk["methods"].items():
        assert entry["runs"] == [f"{method}/seed-0", f"{method}/seed-1"]
        assert entry["val_protocol"] == "plain"
        for i, rel in enumerate(entry["runs"]):
            run = load_run(out / rel)  # an ordinary run directory
            assert (out / rel / "last.pt").is_file() and run.metrics
            assert run.config.resolved_method == method and run.config.seed == i
            res = run.results
            assert entry["test_fused"][i] == res["test"]["acc"]
            assert entry["test_macro_f1"][i] == res["test"]["macro_f1"]
            assert entry["val_fused"][i] == entry["selection_score"][i] == res["val"]["acc"]
            for m in ("a", "b"):
                assert entry["test_modality"][m][i] == res["test"][f"modality_acc/{m}"]
        assert len(entry["seconds"]) == 2 and all(s > 0 for s in entry["seconds"])
    for m, entry in on_disk["unimodal"].items():
        for i, rel in enumerate(entry["runs"]):
            assert rel == f"only-{m}/seed-{i}"
            run = load_run(out / rel)
            assert run.config.modalities == [m] and run.config.resolved_method == "normal"
            assert entry["test"][i] == run.results["test"]["acc"] and entry["val"][i] == run.results["val"]["acc"]
    # the selection and the best unimodal run follow the validation means
    val = {m: np.mean(e["val_fused"]) for m, e in on_disk["methods"].items()}
    best = max(val.values())
    assert on_disk["selected"] == ("normal" if val["normal"] >= best - 0.005 else "ogm_ge")
    uni = {m: np.mean(e["val"]) for m, e in on_disk["unimodal"].items()}
    assert on_disk["best_unimodal"] == max(uni, key=uni.get)
    assert on_disk["fused_below_best_unimodal"] == bool(val[on_disk["selected"]] < max(uni.values()))

    before = mtimes(out)
    assert len(before) > 8 * 4
    lines.clear()
    again = compare(tiny_config(data), out=out, methods=["ogm_ge"], seeds=[0, 1], jobs=2, echo=lines.append,
                    progress=False)
    assert mtimes(out) == before  # nothing retrained, nothing rewritten
    assert "8 finished, 0 to resume, 0 to train" in lines[0]
    assert strip_timing(again) == strip_timing(summary)
    assert again["methods"]["normal"]["seconds"] == summary["methods"]["normal"]["seconds"]


def test_parallel_workers_give_the_serial_results(tmp_path):
    """Runs in worker processes (one thread each) compute what the same runs compute in-process."""
    data = tiny_npz(tmp_path / "tiny.npz")
    serial = compare(tiny_config(data), out=tmp_path / "serial", methods=["normal"], seeds=[1], jobs=1, echo=None,
                     progress=False)
    parallel = compare(tiny_config(data), out=tmp_path / "parallel", methods=["normal"], seeds=[1], jobs=2,
                       echo=None, progress=False)
    assert parallel["jobs"] == 2 and parallel["threads_per_run"] == 1
    assert strip_timing(parallel) == strip_timing(serial)


def test_interrupted_run_resumed_and_summary_equals_uninterrupted(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    cfg = tiny_config(data, epochs=2)
    whole = compare(cfg, out=tmp_path / "whole", methods=["normal"], seeds=[0], jobs=1, echo=None, progress=False)

    out = tmp_path / "cut"
    base = neutral_config(TrainConfig.from_dict(cfg))

    class Killed(Exception):
        pass

    def kill_after_first_epoch(event, info):
        if info["epoch"] == 0:
            raise Killed

    Settings(["normal"], [0], ["a", "b"], base).save(out)  # what compare writes before its first run
    with pytest.raises(Killed):  # killed after its first checkpoint: resumable
        train(run_config(base, PlannedRun("normal", 0), out), callbacks=[kill_after_first_epoch])
    cut = out / "normal" / "seed-0"
    first_epoch = (cut / "metrics.jsonl").read_text()
    assert (cut / "last.pt").is_file() and not (cut / "results.json").exists()
    failed = out / "only-a" / "seed-0"  # failed before its first checkpoint: restarted
    failed.mkdir(parents=True)
    (failed / "train.log").write_text("crashed while building the model\n")

    lines: list[str] = []
    resumed = compare(cfg, out=out, methods=["normal"], seeds=[0], jobs=1, echo=lines.append, progress=False)
    assert "0 finished, 1 to resume, 2 to train" in lines[0]
    assert any(line.startswith("[") and "normal seed 0" in line and "resumed" in line for line in lines)
    assert (cut / "metrics.jsonl").read_text().startswith(first_epoch)
    assert "crashed" not in (failed / "train.log").read_text()
    assert [r["epoch"] for r in load_run(cut).metrics] == [0, 1]
    assert strip_timing(resumed) == strip_timing(whole)

    # adding a method extends the comparison; the finished runs stay untouched
    before = mtimes(out)
    lines.clear()
    extended = compare(cfg, out=out, methods=["opm"], seeds=[0], jobs=1, echo=lines.append, progress=False)
    assert "3 finished, 0 to resume, 1 to train" in lines[0]
    assert list(extended["methods"]) == ["normal", "opm"]
    after = mtimes(out)
    assert {k: v for k, v in after.items() if k in before} == before


# ---------------------------------------------------------------- fabricated comparisons
def fabricate(out: Path, methods: dict[str, list[dict]], unimodal: dict[str, list[dict]], seeds=(0, 1, 2)) -> Path:
    """A comparison directory from given results.json contents (no training)."""
    config = neutral_config(TrainConfig(dataset="byo", data="mine.npz")).to_dict()
    out.mkdir(parents=True)
    (out / SETTINGS).write_text(yaml.safe_dump({"methods": list(methods), "seeds": list(seeds),
                                                "modalities": list(unimodal), "config": config}))

    def write(rel: str, res: dict, mods: list[str]) -> None:
        d = out / rel
        d.mkdir(parents=True)
        full = {"best_epoch": 3, "selected_by": "val acc", "epochs": 10, "modalities": mods,
                "class_names": ["x", "y", "z", "w"], **res}
        (d / "results.json").write_text(json.dumps(full))

    for method, runs in methods.items():
        for seed, res in zip(seeds, runs):
            write(f"{method}/seed-{seed}", res, list(unimodal))
    for m, runs in unimodal.items():
        for seed, res in zip(seeds, runs):
            write(f"only-{m}/seed-{seed}", res, [m])
    return out


def res(val: float, test: float, **extra) -> dict:
    return {"val": {"acc": val}, "test": {"acc": test, "macro_f1": test - 0.01, "modality_acc/audio": 0.5,
                                          "modality_acc/visual": 0.3}, **extra}


def three(val: float, test: float, **extra) -> list[dict]:
    return [res(val + d, test - d, **extra) for d in (-0.01, 0.0, 0.01)]


def test_selection_follows_validation_not_test(tmp_path):
    out = fabricate(
        tmp_path / "c",
        {"normal": three(0.60, 0.62), "ogm_ge": three(0.70, 0.55), "opm": three(0.64, 0.80)},
        {"audio": three(0.58, 0.60), "visual": three(0.40, 0.45)},
    )
    s = summarize(out)
    assert s["selected"] == "ogm_ge"  # best validation; opm is best on test and not selected
    assert s["best_unimodal"] == "audio" and s["fused_below_best_unimodal"] is False
    assert s["methods"]["ogm_ge"]["paired"]["vs_normal"]["per_seed"] == pytest.approx([-0.07, -0.07, -0.07])
    assert s["methods"]["ogm_ge"]["paired"]["vs_best_unimodal"]["mean"] == pytest.approx(-0.05)
    assert s["verdict"].startswith("Use ogm_ge: best mean validation accuracy 70.0")
    assert s["regime"][1].startswith("visual: 45.0 alone, 30.0 inside Normal → starved")
    # the simpler method wins a tie within half a point of validation accuracy
    s = summarize(fabricate(tmp_path / "tie", {"normal": three(0.700, 0.6), "ogm_ge": three(0.704, 0.7)},
                            {"audio": three(0.5, 0.5), "visual": three(0.4, 0.4)}))
    assert s["selected"] == "normal" and s["selection"]["best_score_method"] == "ogm_ge"
    assert "within the 0.5-point tie tolerance" in s["verdict"]
    # a unimodal run is never selected; the verdict says when it beats the selected fused model
    s = summarize(fabricate(tmp_path / "below", {"normal": three(0.55, 0.55), "ogm_ge": three(0.50, 0.5)},
                            {"audio": three(0.60, 0.60), "visual": three(0.30, 0.25)}))
    assert s["selected"] == "normal" and s["best_unimodal"] == "audio"
    assert s["fused_below_best_unimodal"] is True
    assert "below audio alone (60.0)" in s["verdict"]
    assert "near chance" in s["regime"][1]  # visual alone 25.0 with 4 classes


def test_cross_fitting_used_and_required(tmp_path):
    out = fabricate(
        tmp_path / "c",
        {
            "normal": three(0.60, 0.60),
            # fitted on validation: plain val 0.90 is optimistic; the cross-fitted score is what counts
            "uni_ensemble": three(0.66, 0.70, val_protocol="cross-fit"),
            # fits on validation but reports no cross-fitted score: never selected
            "gblend": three(0.95, 0.90),
        },
        {"audio": three(0.58, 0.60), "visual": three(0.40, 0.45)},
    )
    s = summarize(out)
    ue = s["methods"]["uni_ensemble"]
    assert ue["val_protocol"] == "cross-fit" and ue["selection_score"] == pytest.approx([0.65, 0.66, 0.67])
    assert s["methods"]["gblend"]["val_protocol"] == "plain"
    assert s["selection"]["scores"] == pytest.approx({"normal": 0.60, "uni_ensemble": 0.66})
    assert s["selected"] == "uni_ensemble"
    assert "gblend fits on the validation split" in s["not_selectable"]["gblend"]
    assert "cross-fitted" in s["verdict"]
    # with the cross-fitted score below Normal's, Normal is selected
    out2 = fabricate(tmp_path / "d", {"normal": three(0.60, 0.60),
                                      "uni_ensemble": three(0.59, 0.70, val_protocol="cross-fit")},
                     {"audio": three(0.5, 0.5), "visual": three(0.4, 0.4)})
    assert summarize(out2)["selected"] == "normal"
    # the methods' own convention: val.acc itself is the cross-fitted score
    out3 = fabricate(tmp_path / "e", {"normal": three(0.60, 0.60),
                                      "gblend": three(0.62, 0.70, val_protocol="cross-fit"),
                                      "uni_ensemble": three(0.64, 0.50, val_protocol="plain")},
                     {"audio": three(0.5, 0.5), "visual": three(0.4, 0.4)})
    s3 = summarize(out3)
    assert s3["methods"]["gblend"]["selection_score"] == pytest.approx([0.61, 0.62, 0.63])
    assert s3["selected"] == "gblend" and "uni_ensemble" in s3["not_selectable"]


def test_changed_setting_refused_naming_it(tmp_path):
    out = fabricate(tmp_path / "c", {"normal": three(0.6, 0.6)}, {"audio": three(0.5, 0.5), "visual": three(0.4, 0.4)})
    with pytest.raises(ValueError, match=r"epochs: 100 there, 3 now") as err:
        compare({"dataset": "byo", "data": "mine.npz", "epochs": 3}, out=out, echo=None)
    assert "--methods and --seeds" in str(err.value)
    with pytest.raises(ValueError, match=r"lr: 0.001 there, 0.01 now"):
        compare({"dataset": "byo", "data": "mine.npz", "lr": 0.01}, out=out, echo=None)
    with pytest.raises(ValueError, match=r"val_fraction must be > 0.*got val_fraction 0"):
        compare({"dataset": "byo", "data": "mine.npz", "val_fraction": 0.0}, out=tmp_path / "v", echo=None)
    with pytest.raises(ValueError, match=r"methods: unknown \['ogm-ge'\]"):
        compare({"dataset": "byo", "data": "mine.npz"}, out=tmp_path / "m", methods=["ogm-ge"], echo=None)
    assert not (tmp_path / "v").exists() and not (tmp_path / "m").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"is not empty and holds no comparison \(compare.yaml\)"):
        compare({"dataset": "byo", "data": "mine.npz"}, out=tmp_path / "mine", echo=None)


def test_top_level_compare_is_lazy():
    code = ("import sys, ogmge; assert 'ogmge.training' not in sys.modules; "
            "from ogmge.interfaces.compare_report import compare; assert ogmge.compare is compare")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cross_fit_set_matches_the_methods_that_fit_on_validation():
    import inspect

    import ogmge.methods
    from ogmge.training.compare import fits_on_validation
    from ogmge.training.config import METHODS

    fitting = {cls.name for _, cls in inspect.getmembers(ogmge.methods, inspect.isclass)
               if issubclass(cls, ogmge.methods.BalancingMethod) and cls.fits_on_validation}
    assert fitting == {m for m in METHODS if fits_on_validation(m)}


def test_film_fusion_trains_each_modality_alone_with_a_concat_head(tmp_path):
    """FiLM/gated heads take exactly two modalities: the unimodal baselines must still train."""
    data = tiny_npz(tmp_path / "tiny.npz")
    cfg = tiny_config(data, fusion="film", model_options={"hidden": 4, "out_dim": 8,
                                                          "fusion_options": {"condition": "a"}})
    summary = compare(cfg, out=tmp_path / "cmp", methods=["normal"], seeds=[0], jobs=1, echo=lambda _: None,
                      progress=False)
    assert not summary["failed"]
    assert summary["best_unimodal"] in ("a", "b")
    alone = run_config(neutral_config(TrainConfig.from_dict(cfg)), PlannedRun("normal", 0, "a"), tmp_path / "x")
    assert alone.fusion == "concat" and "fusion_options" not in alone.model_options
    both = run_config(neutral_config(TrainConfig.from_dict(cfg)), PlannedRun("normal", 0, None), tmp_path / "x")
    assert both.fusion == "film" and both.model_options["fusion_options"] == {"condition": "a"}


def test_data_paths_are_stored_resolved(tmp_path, monkeypatch):
    from ogmge.training.compare import base_config

    monkeypatch.chdir(tmp_path)
    base = base_config(None, {"data": "tiny.npz"})
    assert base.data == str(tmp_path / "tiny.npz")


def test_regime_line_near_chance_is_relative_to_the_class_count():
    from ogmge.interfaces.compare_report import regime_text
    from ogmge.training.compare.summary import regime_kind

    def line(num_classes, alone):
        return regime_text(RegimeLine("m", alone, alone, 1 / num_classes, regime_kind(alone, alone, 1 / num_classes)))

    assert "near chance" in line(6, 0.172)        # 17.2 % with 6 classes (chance 16.7 %)
    assert "near chance" not in line(6, 0.482)
    assert "near chance" not in line(100, 0.10)   # ten times chance with 100 classes
    assert "near chance" in line(100, 0.02)
    assert "near chance" in line(2, 0.53) and "near chance" not in line(2, 0.60)


def test_verdict_says_when_validation_is_too_small_to_separate_methods(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")  # 12 validation samples: one sample is 8.3 points
    summary = compare(tiny_config(data), out=tmp_path / "cmp", methods=["normal"], seeds=[0], jobs=1,
                      echo=lambda _: None, progress=False)
    assert summary["val_samples"] == 12
    assert "holds 12 samples, so one sample moves a validation accuracy by 8.3 points" in summary["verdict"]
