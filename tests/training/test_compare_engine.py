"""compare's engine: typed results, the selection rule and the report text on fabricated
summaries, the executor's run dependencies, the cost estimate, and a comparison
directory written before the package existed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ogmge.interfaces.compare_report import (
    regime_text,
    report_of,
    summary_document,
    summary_markdown,
    verdict_text,
)
from ogmge.training.compare import (
    Job,
    LocalExecutor,
    MethodEntry,
    Outcome,
    Paired,
    RegimeLine,
    Schedule,
    Summary,
    UnimodalEntry,
    select,
)
from ogmge.training.results import ResultsError, RunResults

FIXTURE = Path(__file__).parent / "fixtures" / "comparison-v1"
#: keys that describe how that comparison executed, not what it computed
EXECUTION = ("jobs", "threads_per_run")
#: keys added after the fixture was written (appended after the documented ones)
ADDED = ("schedule", "method_options")


def builtin_order(doc: dict, stored: dict) -> dict:
    """``doc`` with its tie order cut to the methods of ``stored`` (tests may register plug-ins)."""
    return {**doc, "simplicity_order": [m for m in doc["simplicity_order"] if m in stored["simplicity_order"]]}


# ---------------------------------------------------------------- a comparison written before
def test_summary_of_a_comparison_written_before_keeps_every_key_and_value():
    stored = json.loads((FIXTURE / "summary.json").read_text())
    again = builtin_order(report_of(FIXTURE), stored)
    assert list(again) == list(stored) + list(ADDED)  # the documented keys, in their order; new ones after
    assert again["method_options"] == {} and again["schedule"]["epochs"] == stored["epochs"]
    assert {k: v for k, v in again.items() if k not in EXECUTION + ADDED} == \
        {k: v for k, v in stored.items() if k not in EXECUTION}
    again.update({k: stored[k] for k in EXECUTION})
    from ogmge.interfaces.compare_report import schedule_text

    # the stored text, plus the one paragraph on the shared schedule (after the table's legend)
    old = (FIXTURE / "summary.md").read_text()
    legend_end = old.index("\n\n**Verdict:**")
    expected = old[:legend_end] + "\n\n" + schedule_text(again) + old[legend_end:]
    assert summary_markdown(again) == expected


def test_run_results_round_trip_the_files_a_run_wrote():
    for path in sorted(FIXTURE.glob("*/seed-*/results.json")):
        text = path.read_text()
        res = RunResults.read(path)
        assert res.to_dict() == json.loads(text)
        assert res.metric("val", "acc") == json.loads(text)["val"]["acc"]
    future = {**json.loads((FIXTURE / "normal/seed-0/results.json").read_text()), "new_key": [1, 2]}
    res = RunResults.from_dict(future)
    assert res.extra == {"new_key": [1, 2]} and res.to_dict() == future


def test_corrupt_results_name_the_file(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{ not json")
    with pytest.raises(ResultsError, match=f"{bad} is not valid JSON"):
        RunResults.read(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ResultsError, match="expected a JSON object"):
        RunResults.read(bad)


# ---------------------------------------------------------------- fabricated summaries
def entry(scores, test=None, seeds=(0, 1, 2), protocol="plain", inside=None) -> MethodEntry:
    test = list(test if test is not None else scores)
    return MethodEntry(seeds=list(seeds), test_fused=test, test_macro_f1=test, val_fused=list(scores),
                       selection_score=list(scores), val_protocol=protocol,
                       test_modality={"audio": list(inside or test), "visual": list(inside or test)},
                       best_epoch=[1] * len(seeds), seconds=[1.0] * len(seeds),
                       runs=[f"x/seed-{s}" for s in seeds])


def fabricated(methods: dict[str, MethodEntry], best_uni=("audio", 0.5), val_samples=1000, seeds=(0, 1, 2),
               regime=()) -> Summary:
    uni = UnimodalEntry(list(seeds), [0.5] * 3, [0.5] * 3, [0.5] * 3, [1.0] * 3, ["u"] * 3)
    return Summary(data="mine.npz", epochs=5, seeds=list(seeds), modalities=["audio", "visual"], num_classes=4,
                   methods=methods, unimodal={"audio": uni}, val_samples=val_samples,
                   best_unimodal=best_uni[0] if best_uni else None,
                   best_unimodal_val=best_uni[1] if best_uni else None, regime=list(regime))


def test_selection_takes_the_best_validation_mean_not_the_test():
    s = fabricated({"normal": entry([0.60, 0.61, 0.62], test=[0.9] * 3),
                    "ogm_ge": entry([0.69, 0.70, 0.71], test=[0.1] * 3)})
    v = select(s, 0.005)
    assert v.selected == "ogm_ge" and v.best_score_method == "ogm_ge"
    assert v.scores == pytest.approx({"normal": 0.61, "ogm_ge": 0.70})
    assert v.within_tolerance == ["ogm_ge"] and not v.fused_below_best_unimodal


def test_a_tie_within_the_tolerance_goes_to_the_simpler_method():
    s = fabricated({"normal": entry([0.700] * 3), "mmpareto": entry([0.704] * 3), "ogm_ge": entry([0.702] * 3)})
    v = select(s, 0.005)
    assert v.selected == "normal" and v.best_score_method == "mmpareto"
    assert v.within_tolerance == ["normal", "ogm_ge", "mmpareto"]
    assert select(s, 0.003).selected == "ogm_ge"  # within 0.3 points of 0.704: ogm_ge and mmpareto
    assert select(s, 0.0).selected == "mmpareto"


def test_selection_refuses_uncrossfitted_validation_fits_incomplete_and_scoreless_methods():
    s = fabricated({
        "normal": entry([0.6] * 3),
        "gblend": entry([0.99] * 3),  # fits on validation, plain protocol: optimistic
        "uni_ensemble": entry([0.62] * 3, protocol="cross-fit"),
        "ogm": entry([0.9, 0.9], seeds=(0, 1)),  # 2 of 3 seeds
        "opm": MethodEntry(**{**entry([0.9] * 3).__dict__, "selection_score": [None] * 3}),
    })
    v = select(s, 0.005)
    assert v.selected == "uni_ensemble" and set(v.scores) == {"normal", "uni_ensemble"}
    assert "gblend fits on the validation split" in v.not_selectable["gblend"]
    assert v.not_selectable["ogm"] == "ogm: finished 2 of 3 seeds; not selected"
    assert v.not_selectable["opm"] == "opm: no validation score; not selected"


def test_the_verdict_flags_a_fused_model_below_the_best_modality_alone():
    s = fabricated({"normal": entry([0.55] * 3), "ogm_ge": entry([0.50] * 3)}, best_uni=("audio", 0.60))
    v = select(s)
    assert v.selected == "normal" and v.fused_below_best_unimodal
    s = fabricated({"normal": entry([0.55] * 3)}, best_uni=None)
    assert select(s).fused_below_best_unimodal is False
    assert select(fabricated({"ogm": entry([0.5] * 2, seeds=(0, 1))})).selected is None
    with pytest.raises(ValueError, match="tie_tolerance must be a finite number >= 0"):
        select(s, -1)


def test_verdict_text_from_a_fabricated_summary():
    s = fabricated({"normal": entry([0.700] * 3), "ogm_ge": entry([0.704] * 3)}, best_uni=("audio", 0.8),
                   val_samples=50)
    s.methods["normal"].paired.update(vs_normal=Paired([0, 1, 2], [0.0] * 3, 0.0, 0.0),
                                      vs_best_unimodal=Paired([0, 1, 2], [-0.1] * 3, -0.1, 0.02))
    v = select(s, 0.005)
    text = verdict_text(s, v)
    assert text.startswith("Use normal: best mean validation accuracy 70.0; ogm_ge scored 70.4, within the "
                           "0.5-point tie tolerance, so the simpler normal is kept; test accuracy 70.0 ± 0.0; "
                           "-10.0 ± 2.0 vs audio alone.")
    assert "No balancing method beat Normal on validation by more than 0.5 points." in text
    assert "holds 50 samples, so one sample moves a validation accuracy by 2.0 points" in text
    assert text.endswith("WARNING: the selected fused model's validation accuracy (70.0) is below audio alone "
                         "(80.0): on this data a model of audio alone is the better choice.")
    none = fabricated({"ogm": entry([0.5] * 2, seeds=(0, 1))})
    assert verdict_text(none, select(none)) == \
        "No method finished every seed with a validation score: nothing selected."


def test_regime_text_and_the_document_from_a_fabricated_summary():
    lines = [RegimeLine("audio", 0.60, 0.58, 0.25, "as_well"), RegimeLine("visual", 0.45, 0.30, 0.25, "starved"),
             RegimeLine("depth", 0.26, 0.25, 0.25, "near_chance")]
    assert [regime_text(r) for r in lines] == [
        "audio: 60.0 alone, 58.0 inside Normal → learnt inside Normal about as well as alone",
        "visual: 45.0 alone, 30.0 inside Normal → starved inside Normal (15.0 points below alone: the paper's "
        "regime)",
        "depth: 26.0 alone, 25.0 inside Normal → depth alone near chance (25.0): weak modality carries little; "
        "balancing cannot help it",
    ]
    s = fabricated({"normal": entry([0.6] * 3)}, regime=lines)
    doc = summary_document(s, select(s))
    assert doc["regime"][1].startswith("visual: 45.0 alone") and doc["selected"] == "normal"
    assert "| normal * |" in summary_markdown(doc)


# ---------------------------------------------------------------- executing plans with dependencies
def record_work(values: dict, resume: bool) -> float:
    """A stand-in for training: appends the job's name to a log file; fails when told to."""
    log = Path(values["log"])
    with log.open("a") as fh:
        fh.write(values["name"] + "\n")
    if values.get("fail"):
        raise RuntimeError(f"{values['name']} broke")
    return 1.0


def jobs_for(log: Path, fail: str | None = None) -> list[Job]:
    def job(name, needs=()):
        return Job(name, {"log": str(log), "name": name, "fail": name == fail}, needs=tuple(needs))
    # listed dependants first: the executor must order them after what they need
    return [job("teacher-user", ["teacher"]), job("warm", ["only-a", "only-b"]), job("chain", ["warm"]),
            job("teacher"), job("only-a"), job("only-b"), job("free")]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_plan_with_dependent_runs_executes_dependencies_first(tmp_path, workers):
    log = tmp_path / "order.log"
    seen: list[Outcome] = []
    outcomes = LocalExecutor(workers, threads=1, work=record_work).run(jobs_for(log), seen.append)
    order = log.read_text().split()
    assert sorted(order) == sorted(j.key for j in jobs_for(log))
    for job in jobs_for(log):
        for need in job.needs:
            assert order.index(need) < order.index(job.key), order
    assert all(o.status == "done" and o.seconds == 1.0 for o in outcomes.values())
    assert [o.key for o in seen] == list(dict.fromkeys(o.key for o in seen)) and len(seen) == 7


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_dependency_fails_its_dependants_with_the_reason(tmp_path, workers):
    log = tmp_path / "order.log"
    outcomes = LocalExecutor(workers, threads=1, work=record_work).run(jobs_for(log, fail="only-b"))
    assert outcomes["only-b"].status == "failed" and outcomes["only-b"].error == "RuntimeError: only-b broke"
    assert outcomes["warm"].status == "failed"
    assert outcomes["warm"].error == "not run: it needs only-b, which did not finish (RuntimeError: only-b broke)"
    assert outcomes["chain"].status == "failed" and "it needs warm, which did not finish (not run: it needs only-b" \
        in outcomes["chain"].error
    assert {k for k, o in outcomes.items() if o.status == "done"} == {"teacher", "teacher-user", "only-a", "free"}
    assert "warm" not in log.read_text().split() and "chain" not in log.read_text().split()


def test_a_schedule_refuses_unknown_needs_and_cycles():
    with pytest.raises(ValueError, match=r"job b needs \['zz'\], which are not in the plan"):
        Schedule([Job("a", {}), Job("b", {}, needs=("zz",))])
    with pytest.raises(ValueError, match="the needs form a cycle among"):
        Schedule([Job("a", {}, needs=("b",)), Job("b", {}, needs=("a",)), Job("c", {})])


# ---------------------------------------------------------------- the cost estimate
def test_the_cost_estimate_runs_the_method_and_adds_its_declared_extra_cost(tmp_path, monkeypatch):
    from ogmge.methods.mmpareto import MMPareto
    from ogmge.training import TrainConfig
    from ogmge.training.compare import estimate_cost
    from support.compare_data import tiny_config, tiny_npz

    data = tiny_npz(tmp_path / "tiny.npz")
    calls = []
    original = MMPareto.backward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MMPareto, "backward", counted)
    monkeypatch.setattr(MMPareto, "extra_steps_per_epoch", lambda self, train, val: 2.5 * train + val,
                        raising=False)
    cfg = TrainConfig.from_dict(tiny_config(data, method="mmpareto", epochs=7))
    cost = estimate_cost(cfg, steps=2)
    assert len(calls) == 2 * 2  # two epochs (warm-up, measured) of two steps, through the method
    assert cost.train_steps == 5 and cost.val_steps == 2  # 36 training and 12 validation samples, batches of 8
    assert cost.extra_steps == 2.5 * 5 + 2 and cost.epochs == 7 and cost.modalities == ("a", "b")
    assert cost.run_seconds == pytest.approx(cost.setup_seconds + 7 * cost.step_seconds * (5 + 14.5 + 2 / 3))
    assert not any(tmp_path.glob("**/results.json"))  # the trial run writes no run directory


def test_a_fixture_copy_reruns_to_the_same_summary(tmp_path):
    """A rerun over the comparison written before the package: everything finished, nothing trained."""
    from ogmge.interfaces.compare_report import compare
    from ogmge.training.compare import Settings

    out = tmp_path / "cmp"
    shutil.copytree(FIXTURE, out)
    settings = Settings.load(out)
    lines: list[str] = []
    doc = compare(settings.config, out=out, methods=settings.methods, seeds=settings.seeds, jobs=1,
                  echo=lines.append, progress=False)
    assert "10 finished, 0 to resume, 0 to train" in lines[0]
    stored = json.loads((FIXTURE / "summary.json").read_text())
    doc = builtin_order(doc, stored)
    assert {k: v for k, v in doc.items() if k not in EXECUTION + ADDED} == \
        {k: v for k, v in stored.items() if k not in EXECUTION}
