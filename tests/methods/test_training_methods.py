"""Every method through the trainer: ``ogmge train --method X``, exact resume, the test split
never reaching what is fitted, cross-fitted validation, DDP (or its refusal)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from ogmge.interfaces.cli import main
from ogmge.methods import get as registry_get
from ogmge.methods import names as registry_names
from ogmge.training import DataBundle, load_checkpoint_file, load_run, train
from ogmge.training.balancing import halves
from ogmge.training.factory import build_model_from_config
from support.cli_tiny import TINY
from support.training_standins import (
    Stop,
    TinyDataset,
    metric_rows,
    stop_after,
    tiny_bundle,
    tiny_config,
)

METHODS = ("gblend", "mdrop", "mmpareto", "uni_ensemble", "anchored", "masam")
FITTED = ("gblend", "uni_ensemble", "anchored")  # fitted on validation: cross-fitted selection


def model_fn(bundle, config):
    return build_model_from_config(config, bundle.modalities, bundle.num_classes, builder="generic")[0]


def _cfg(tmp_path, method, **changes):
    values = dict(method=method, gblend_super_epoch=1, model_options={"hidden": 8, "out_dim": 8})
    values.update(changes)
    return tiny_config(tmp_path, **values)




@pytest.mark.parametrize("method", METHODS)
def test_cli_trains_each_method_and_eval_reports_heads(tmp_path, method, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp_path / method
    assert main(["train", "--config", str(cfg), "--method", method, "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == method
    assert results["val_protocol"] == ("cross-fit" if method in FITTED else "plain")
    trace = load_run(run).trace()
    assert all("coeff/audio" in t and "ratio/visual" in t for t in trace)  # OGM-GE measure-only columns
    assert not any(t["modulated"] for t in trace)
    key = {"gblend": "gblend_w/fused", "mdrop": "mdrop_keep/audio", "mmpareto": "mmpareto_cos/visual",
           "uni_ensemble": "ensemble_w/audio", "anchored": "blend_w/fused", "masam": "masam_score/visual"}[method]
    assert all(key in t for t in trace)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt")]) == 0
    out = capsys.readouterr().out
    if method != "mdrop":
        assert "its own head's accuracy" in out


@pytest.mark.parametrize("method", METHODS)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, method):
    full = train(_cfg(tmp_path / "full", method), datasets=tiny_bundle(), model=model_fn)
    cut = _cfg(tmp_path / "cut", method)
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), model=model_fn, callbacks=[stop_after(1)])
    resumed = train(cut, resume=True, datasets=tiny_bundle(), model=model_fn)
    assert resumed.start_epoch == 2
    a, b = load_checkpoint_file(full.run_dir / "last.pt"), load_checkpoint_file(resumed.run_dir / "last.pt")
    for k in a["model"]:
        if torch.is_tensor(a["model"][k]):
            assert torch.equal(a["model"][k], b["model"][k]), k
    assert repr(a["method"]) == repr(b["method"])
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


@pytest.mark.parametrize("method", FITTED)
def test_the_test_split_never_reaches_what_is_fitted(tmp_path, method):
    runs = []
    for i, test_seed in enumerate((3, 99)):
        bundle = DataBundle(TinyDataset(48, 1), TinyDataset(15, 2), TinyDataset(30, test_seed))
        runs.append(train(_cfg(tmp_path / str(i), method, eval_test_every_epoch=True), datasets=bundle,
                          model=model_fn))
    a, b = (load_checkpoint_file(r.run_dir / "last.pt") for r in runs)
    assert repr(a["method"]) == repr(b["method"])  # G-Blending's weights / the ensemble's w
    for k in a["model"]:
        if torch.is_tensor(a["model"][k]):
            assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["val/acc"] for r in runs[0].history] == [r["val/acc"] for r in runs[1].history]


@pytest.mark.parametrize("method", ("uni_ensemble", "anchored"))
def test_validation_changes_what_is_fitted(tmp_path, method):
    runs = [train(_cfg(tmp_path / str(s), method),
                  datasets=DataBundle(TinyDataset(48, 1), TinyDataset(15, s), TinyDataset(30, 3)), model=model_fn)
            for s in (2, 7)]
    w = [load_checkpoint_file(r.run_dir / "last.pt")["model"]["combiner.weights"] for r in runs]
    assert not torch.equal(w[0], w[1])


def test_cross_fit_halves_are_disjoint_seeded_and_cover_the_split():
    a, b = halves(15, 3)
    assert len(a) == 7 and len(b) == 8
    assert sorted(torch.cat([a, b]).tolist()) == list(range(15))
    assert torch.equal(halves(15, 3)[0], a) and not torch.equal(halves(15, 4)[0], a)


def test_gblend_needs_a_validation_split_and_ddp_refusal_names_the_method(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        train(_cfg(tmp_path / "g", "gblend"), datasets=tiny_bundle(val=False), model=model_fn)
    from ogmge.methods import BalancingMethod
    from ogmge.training.balancing import check_method

    class Local(BalancingMethod):
        name = "local"
        distributed_ok = False

    with pytest.raises(ValueError, match="'local' is not supported under DDP"):
        check_method(Local(), distributed=True, has_val=True)


# ------------------------------------------------------------------------------- DDP
def _worker(rank: int, world: int, port: int, tmp: str, method: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)

    def save_last(event, info):
        if info["epoch"] == 1:
            trainer = info["trainer"]
            torch.save({"model": trainer.model.state_dict(), "method": repr(trainer.method.state_dict())},
                       os.path.join(tmp, f"rank{rank}.pt"))

    try:
        train(_cfg(Path(tmp), method, epochs=2), datasets=tiny_bundle(), model=model_fn, callbacks=[save_last])
    except ValueError as exc:
        Path(tmp, f"error{rank}.txt").write_text(str(exc))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Every registered method that keeps DDP replicas identical (declared ``ddp`` not "refused").
# the package's own methods (a test's plug-in, registered in this process only, cannot be
# imported by the spawned ranks)
DDP_METHODS = [n for n in registry_names() if registry_get(n).ddp != "refused"
               and registry_get(n).__module__.startswith("ogmge.")]


@pytest.mark.parametrize("method", DDP_METHODS)
def test_ddp_two_ranks_stay_identical(tmp_path, method):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), method), nprocs=2, join=True)
    assert not list(tmp_path.glob("error*.txt"))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k, v in r0["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, r1["model"][k]), k
    assert r0["method"] == r1["method"]


def test_gblend_first_estimate_starts_on_the_initial_model(tmp_path):
    run = train(_cfg(tmp_path, "gblend", epochs=1), datasets=tiny_bundle(), model=model_fn)
    row = run.history[0]
    assert "gblend_dG/fused" in row  # estimated after epoch 0: the interval started on the initial model
    state = load_checkpoint_file(run.run_dir / "last.pt")["method"]
    assert state["estimates"] == 1 and abs(sum(state["weights"].values()) - 1) < 1e-12


def test_ensemble_validation_is_cross_fitted_by_hand():
    from ogmge.methods import UnimodalEnsemble, ensemble_logits, fit_simplex_weights
    from ogmge.training.balancing import evaluate_validation
    from support.method_helpers import batch, tiny_model

    names = ("audio", "visual")
    model = tiny_model(names, prediction="ensemble", dtype=torch.float32)
    batches = []
    for i in range(3):
        x, y = batch(names, n=10, dtype=torch.float32, seed=40 + i)
        batches.append({"inputs": x, "labels": y, "lengths": {}})
    method = UnimodalEnsemble(list(names))
    metrics, losses = evaluate_validation(method, model, batches, torch.device("cpu"), amp=False, seed=5)
    model.eval()
    with torch.no_grad():
        outs = [model(b["inputs"]) for b in batches]
    heads = {n: torch.cat([o.head_logits[n] for o in outs]) for n in names}
    y = torch.cat([b["labels"] for b in batches])
    a, b = halves(30, 5)
    correct = 0
    for fit_on, score_on in ((a, b), (b, a)):
        w = fit_simplex_weights({n: heads[n][fit_on] for n in names}, y[fit_on], names)
        pred = ensemble_logits({n: heads[n][score_on] for n in names}, w, names).argmax(1)
        correct += int((pred == y[score_on]).sum())
    assert metrics["acc"] == pytest.approx(correct / 30, abs=1e-12)
    w_all = fit_simplex_weights(heads, y, names)
    assert torch.allclose(model.ensemble_weights.double(), w_all, atol=1e-7)  # the model keeps the full fit
    assert losses is None


def tiny_collate(dataset):
    from ogmge.data.collate import collate_samples

    return collate_samples([dataset[i] for i in range(len(dataset))])


def test_anchored_keeps_the_blend_fitted_on_the_whole_validation_split(tmp_path):
    """The checkpoint's blend weights are the fit on every validation output of the selected
    model, and its test prediction is that blend of the fusion head and the unimodal heads."""
    from ogmge.methods import AnchoredFusion, ensemble_logits
    from ogmge.training.metrics import collect

    bundle = tiny_bundle()
    run = train(_cfg(tmp_path, "anchored", epochs=2), datasets=bundle, model=model_fn)
    model = run.model.eval()
    val = collect(model, [tiny_collate(bundle.val)], torch.device("cpu"))
    af = AnchoredFusion(list(model.modalities))
    w = af.fit_prediction(head_logits={"fused": val["fused_logits"], **val["head_logits"]}, labels=val["labels"])
    assert torch.allclose(model.ensemble_weights.double(), w, rtol=0, atol=1e-6)
    test = collect(model, [tiny_collate(bundle.test)], torch.device("cpu"))
    want = ensemble_logits({"fused": test["fused_logits"], **test["head_logits"]}, model.ensemble_weights,
                           af.members)
    assert torch.allclose(test["logits"], want, atol=1e-5)
