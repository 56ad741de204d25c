"""(method, prediction) pairs: one run evaluates every prediction rule its method declares,
each with its own selected epoch; compare reports a row per pair; the test split selects nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ogmge.interfaces.compare_report import compare
from ogmge.training import TrainConfig, train
from ogmge.training.compare import MethodEntry, select
from ogmge.training.compare.lookups import (
    alias_target,
    candidate_order,
    fits_on_validation,
    pairs_of,
)
from ogmge.training.compare.plan import check_candidates, resolve_aliases
from ogmge.training.results import RunResults
from support.compare_data import tiny_config, tiny_npz
from support.training_standins import Stop, stop_after

#: A schedule under which, on the tiny data, the fused head and the stacked pool select different epochs.
SCHEDULE = {"epochs": 8, "lr": 0.05, "patience": None}


def _run(data, out, **changes):
    return train(TrainConfig.from_dict(tiny_config(data, out=str(out), seed=3, **{**SCHEDULE, **changes})))


# ------------------------------------------------------------------ the trainer
def test_each_rule_selects_its_own_epoch_as_a_run_predicting_with_it_alone(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    fused = _run(data, tmp_path / "fused", method="multitask")
    blend = _run(data, tmp_path / "blend", method="multitask", prediction="blend")
    anchored = _run(data, tmp_path / "anchored", method="anchored")
    stacked = fused.pairs["blend"]
    assert stacked["best_epoch"] != fused.best_epoch  # each rule its own epoch (2 and 1 here)
    # the other rule of one run is exactly the run that predicts with it
    assert stacked["best_epoch"] == blend.best_epoch == anchored.best_epoch
    assert stacked["val"] == blend.val_metrics and stacked["test"] == blend.test_metrics == anchored.test_metrics
    assert stacked["val_protocol"] == "cross-fit" and stacked["label"] == "stacked"
    assert blend.pairs["fused"]["best_epoch"] == fused.best_epoch
    assert blend.pairs["fused"]["test"] == fused.test_metrics and blend.pairs["fused"]["val_protocol"] == "plain"
    assert anchored.pairs == {}  # anchored declares one rule
    # every epoch's row carries the other rule's validation score and its own "best" mark
    rows = fused.history
    assert [r["pairs/blend/best"] for r in rows].index(True) == 0
    assert [r["epoch"] for r in rows if r["pairs/blend/best"]][-1] == stacked["best_epoch"]
    assert [r["pairs/blend/val/acc"] for r in rows] == [r["val/acc"] for r in blend.history]
    res = RunResults.read(tmp_path / "fused" / "results.json")
    assert res.prediction == "fused" and res.for_prediction("fused") is res
    view = res.for_prediction("blend")
    assert view is not None and view.best_epoch == blend.best_epoch and view.test == blend.test_metrics
    assert res.for_prediction("ensemble") is None


def test_early_stopping_waits_for_every_rule_and_each_keeps_its_own_selection(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    stop = {"patience": 1, "stopping": "raw", "epochs": 12}
    fused = _run(data, tmp_path / "fused", method="multitask", **stop)
    blend = _run(data, tmp_path / "blend", method="multitask", prediction="blend", **stop)
    # one run per rule set: it ends when the last rule's patience runs out (here the fused head's), so
    # the run predicting with the pool goes on past the point where it alone would have stopped
    last = max(fused.best_epoch, fused.pairs["blend"]["best_epoch"])
    assert len(fused.history) == len(blend.history) == last + 2 > blend.best_epoch + 2
    assert not any(r["best"] for r in blend.history[blend.best_epoch + 2:])  # its selection had ended
    assert fused.pairs["blend"]["best_epoch"] == blend.best_epoch and blend.pairs["fused"]["best_epoch"] == \
        fused.best_epoch
    assert fused.pairs["blend"]["test"] == blend.test_metrics and blend.pairs["fused"]["test"] == fused.test_metrics


def test_permuting_the_test_labels_changes_no_selection(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    with np.load(data, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    split = arrays["split"].astype(str)
    labels = arrays["labels"].copy()
    test = np.flatnonzero(split == "test")
    labels[test] = np.random.default_rng(1).permutation(labels[test])
    labels[test[:2]] = (labels[test[:2]] + 1) % 3  # and some test labels wrong outright
    other = tmp_path / "permuted.npz"
    np.savez(other, **{**arrays, "labels": labels})
    a = _run(data, tmp_path / "a", method="multitask")
    b = _run(other, tmp_path / "b", method="multitask")
    assert a.pairs["blend"]["test"]["acc"] != b.pairs["blend"]["test"]["acc"]  # the test split did change
    assert (a.best_epoch, a.pairs["blend"]["best_epoch"]) == (b.best_epoch, b.pairs["blend"]["best_epoch"])
    assert a.pairs["blend"]["val"] == b.pairs["blend"]["val"] and a.val_metrics == b.val_metrics
    selection = [{k: v for k, v in r.items() if k.startswith(("val/", "pairs/")) or k == "best"} for r in a.history]
    assert selection == [{k: v for k, v in r.items() if k.startswith(("val/", "pairs/")) or k == "best"}
                         for r in b.history]


def test_a_resumed_run_selects_every_rule_as_an_uninterrupted_one(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    whole = _run(data, tmp_path / "whole", method="multitask")
    with pytest.raises(Stop):
        train(TrainConfig.from_dict(tiny_config(data, out=str(tmp_path / "cut"), seed=3, method="multitask",
                                                **SCHEDULE)), callbacks=[stop_after(3)])
    again = train(TrainConfig.from_dict(tiny_config(data, out=str(tmp_path / "cut"), seed=3, method="multitask",
                                                    **SCHEDULE)), resume=True)
    assert again.pairs == whole.pairs


# ------------------------------------------------------------------ compare
def test_compare_reports_both_pairs_of_multitask_from_one_run_per_seed(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    doc = compare(tiny_config(data, **SCHEDULE), out=out, methods=["multitask"], seeds=[3], jobs=1, echo=None,
                  progress=False)
    assert list(doc["methods"]) == ["normal", "multitask", "multitask+stacked"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["multitask", "normal", "only-a", "only-b"]
    mt, st = doc["methods"]["multitask"], doc["methods"]["multitask+stacked"]
    assert mt["runs"] == st["runs"] == ["multitask/seed-3"]
    results = json.loads((out / "multitask/seed-3/results.json").read_text())
    assert mt["best_epoch"] == [results["best_epoch"]] and st["best_epoch"] == [results["pairs"]["blend"]["best_epoch"]]
    assert mt["best_epoch"] != st["best_epoch"]
    assert st["test_fused"] == [results["pairs"]["blend"]["test"]["acc"]] and mt["test_fused"] == [results["test"]["acc"]]
    assert (mt["val_protocol"], st["val_protocol"]) == ("plain", "cross-fit")
    assert st["selection_score"] == [results["pairs"]["blend"]["val"]["acc"]]
    assert "multitask+stacked" in doc["simplicity_order"]
    md = (out / "summary.md").read_text()
    assert "| multitask+stacked" in md and "one training serves both rows" in md
    # anchored asks for the pair multitask+stacked: no new training, the same row
    again = compare(tiny_config(data, **SCHEDULE), out=out, methods=["anchored"], seeds=[3], jobs=1, echo=None,
                    progress=False)
    assert again["methods"] == doc["methods"]


def test_anchored_alone_reports_the_stacked_pair_only(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    doc = compare(tiny_config(data, epochs=2), out=tmp_path / "cmp", methods=["anchored"], seeds=[0], jobs=1,
                  echo=None, progress=False)
    assert list(doc["methods"]) == ["normal", "multitask+stacked"]
    assert doc["methods"]["multitask+stacked"]["runs"] == ["multitask/seed-0"]
    with pytest.raises(ValueError, match="anchored is the pair multitask\\+stacked, trained as multitask"):
        compare(tiny_config(data, epochs=2), out=tmp_path / "opt", methods=["anchored"], seeds=[0], jobs=1,
                echo=None, progress=False, method_options={"anchored": {"anchor_weight": 2.0}})


# ------------------------------------------------------------------ names and selection
def test_candidate_names_order_and_aliases():
    assert pairs_of("multitask") == [("multitask", "fused"), ("multitask+stacked", "blend")]
    assert pairs_of("uni_ensemble") == [("uni_ensemble", "ensemble")]  # its pool's members: the heads only
    assert alias_target("anchored") == "multitask+stacked" and alias_target("multitask") is None
    order = candidate_order()
    assert order.index("multitask") + 1 == order.index("multitask+stacked")
    assert fits_on_validation("multitask+stacked") and not fits_on_validation("multitask")
    assert check_candidates(resolve_aliases(["anchored", "multitask", "ogm_ge"])) == \
        ["normal", "ogm_ge", "multitask", "multitask+stacked"]
    with pytest.raises(ValueError, match="unknown \\['multitask\\+fused'\\]"):
        check_candidates(["multitask+fused"])


def _entry(scores, protocol="plain") -> MethodEntry:
    return MethodEntry(seeds=[0, 1], test_fused=[0.1, 0.1], test_macro_f1=[0.1, 0.1], val_fused=list(scores),
                       selection_score=list(scores), val_protocol=protocol, test_modality={}, best_epoch=[1, 2],
                       seconds=[1.0, 1.0], runs=["multitask/seed-0", "multitask/seed-1"])


def _summary(methods):
    from ogmge.training.compare import Summary

    return Summary(data="x", epochs=3, seeds=[0, 1], modalities=["a", "b"], num_classes=3, methods=methods,
                   unimodal={}, val_samples=1000, best_unimodal=None, best_unimodal_val=None, regime=[])


def test_the_fused_pair_wins_a_tie_with_the_stacked_one():
    s = _summary({"normal": _entry([0.60, 0.60]), "multitask": _entry([0.700, 0.700]),
                  "multitask+stacked": _entry([0.703, 0.703], "cross-fit")})
    v = select(s, 0.005)
    assert v.selected == "multitask" and v.best_score_method == "multitask+stacked"
    assert v.within_tolerance == ["multitask", "multitask+stacked"]
    assert select(s, 0.001).selected == "multitask+stacked"
    # listed the other way round, the tie order still puts the fused pair first
    flipped = _summary({"multitask+stacked": _entry([0.703, 0.703], "cross-fit"), "multitask": _entry([0.7, 0.7])})
    assert select(flipped, 0.005).selected == "multitask"
    # a stacked pair whose score was not cross-fitted is not selected
    plain = _summary({"normal": _entry([0.6, 0.6]), "multitask+stacked": _entry([0.9, 0.9])})
    v = select(plain, 0.005)
    assert v.selected == "normal" and "multitask+stacked" in v.not_selectable


def test_a_rule_whose_patience_ran_out_keeps_its_selection():
    import functools

    import torch

    from ogmge.training.pairs import PredictionPairs
    from ogmge.training.stopping import build_rule

    pairs = PredictionPairs(["fused"], ("a", "b"), functools.partial(build_rule, "raw_v1", epochs=6, patience=1))
    labels = torch.tensor([0, 1, 0, 1])

    def outputs(correct: int) -> dict:  # the first ``correct`` samples predicted right, the others wrong
        right = torch.nn.functional.one_hot(labels, 2).double()
        logits = torch.where(torch.arange(4)[:, None] < correct, right, 1 - right)
        return {"logits": logits, "fused_logits": logits, "labels": labels, "modality_logits": {}, "head_logits": {}}

    marks = []
    for epoch, correct in enumerate([2, 1, 4, 4]):
        row, improved = pairs.validate(epoch, outputs(correct))
        marks.append((row["pairs/fused/val/acc"], row["pairs/fused/best"], improved))
        if improved:
            pairs.record("test", improved, outputs(4 - correct))
        assert pairs.should_stop(epoch) == (epoch >= 1)
    # best at epoch 0; patience 1 ran out after epoch 1: the later 1.0 is measured, never selected
    assert marks == [(0.5, True, ["fused"]), (0.25, False, []), (1.0, False, []), (1.0, False, [])]
    res = pairs.results()["fused"]
    assert res["best_epoch"] == 0 and res["val"]["acc"] == 0.5 and res["test"]["acc"] == 0.5
    assert res["val_protocol"] == "plain" and res["weights"] is None
    again = PredictionPairs(["fused"], ("a", "b"), functools.partial(build_rule, "raw_v1", epochs=6, patience=1))
    again.load_state_dict(pairs.state_dict())
    assert again.results() == pairs.results()
