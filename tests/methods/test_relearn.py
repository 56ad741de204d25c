"""Diagnosing & Re-learning (``relearn``): its pieces against hand computations, its options,
the trainer's split-features hook (when, on what, and exact resume across it), and training
by name on three bring-your-own modalities through the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ogmge.methods import BalancingMethod, Relearn, purity, reinit_strength, soft_reinit_
from ogmge.methods.relearn import blend, is_due, kmeans_assign, minmax_scale, scaled_period
from ogmge.training import load_checkpoint_file, load_run, train
from ogmge.training.balancing import halves
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.method_helpers import CLASSES, batch, tiny_model
from support.training_standins import Stop, metric_rows, stop_after, tiny_bundle, tiny_config

NAMES = ("audio", "visual", "text")


# ----------------------------------------------------------------------------- pieces
def test_purity_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    clusters = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    # cluster 0: {0,0,1} -> 2; cluster 1: {1,2,2} -> 2; cluster 2: {2,0} -> 1
    assert purity(labels, clusters) == 5 / 8
    assert purity(labels, labels) == 1.0
    assert purity(labels, torch.zeros_like(labels)) == 3 / 8
    perm = torch.tensor([2, 0, 1])
    assert purity(labels, perm[clusters]) == purity(labels, clusters)  # cluster names do not matter
    with pytest.raises(ValueError, match="as many labels"):
        purity(labels, clusters[:3])


def test_minmax_scale_matches_scikit_learn_with_a_constant_column():
    from sklearn.preprocessing import MinMaxScaler

    x = torch.randn(9, 4, dtype=torch.float64)
    x[:, 2] = 1.5
    want = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x.numpy())
    torch.testing.assert_close(minmax_scale(x), torch.from_numpy(want), rtol=1e-12, atol=1e-12)


def test_kmeans_is_seeded_and_handles_fewer_samples_than_classes():
    x = minmax_scale(torch.randn(30, 5, generator=torch.Generator().manual_seed(0)))
    a, b = kmeans_assign(x, 3, seed=7, n_init=2), kmeans_assign(x, 3, seed=7, n_init=2)
    assert torch.equal(a, b) and a.dtype == torch.int64 and set(a.tolist()) == {0, 1, 2}
    few = kmeans_assign(x[:2], 3, seed=1)
    assert sorted(few.tolist()) == [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        collapsed = kmeans_assign(minmax_scale(torch.zeros(10, 4)), 3, seed=1)  # one distinct point
    assert collapsed.unique().numel() == 1 and purity(torch.arange(10) % 3, collapsed) == 0.4


def test_strength_and_blend():
    gap, w = reinit_strength(0.9, 0.6, 3.0)
    assert abs(gap - 0.3) < 1e-15 and abs(w - np.tanh(0.9)) < 1e-15
    assert reinit_strength(0.6, 0.9, 3.0) == (gap, w)  # |gap|, as the paper and ours.py:122
    cur, init = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    torch.testing.assert_close(blend(cur, init, 0.25), torch.tensor([0.75, 2.5]))
    assert blend(cur, init, 0.25).dtype == torch.float32


def test_schedule_scaled_to_the_budget():
    assert scaled_period(20, 90) == 20 and scaled_period(20, 12) == 3 and scaled_period(20, 2) == 1
    assert scaled_period(20, 12, scale=False) == 20 and scaled_period(20, None) == 20
    done, fired = 0, []
    for e in range(90):  # the authors' run: after epochs 20, 40, 60 (ours.py:418-420)
        if is_due(e, 20, done, 3):
            fired.append(e)
            done += 1
    assert fired == [20, 40, 60]


def test_soft_reinit_blends_parameters_and_float_buffers_in_place():
    model = tiny_model(NAMES, heads=False)
    enc = model.encoders["audio"]
    init = {n: t.detach().clone() for n, t in list(enc.named_parameters()) + list(enc.named_buffers())}
    params = list(enc.parameters())
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
        enc.bn.running_mean.add_(2.0)
        enc.bn.num_batches_tracked.add_(5)
    soft_reinit_(enc, init, 0.5)
    assert all(a is b for a, b in zip(params, enc.parameters()))  # the same Parameter objects
    torch.testing.assert_close(enc.fc1.weight, init["fc1.weight"] + 0.5)
    torch.testing.assert_close(enc.bn.running_mean, init["bn.running_mean"] + 1.0)
    assert int(enc.bn.num_batches_tracked) == 5
    soft_reinit_(enc, init, 1.0, buffers=False)
    torch.testing.assert_close(enc.fc1.weight, init["fc1.weight"])
    torch.testing.assert_close(enc.bn.running_mean, init["bn.running_mean"] + 1.0)  # buffers kept


# ----------------------------------------------------------------------------- the method
def _method(**kw):
    model = tiny_model(NAMES, heads=False)
    opts = dict(lam=3.0, reinit_epoch=1, reinit_num=2, scale_schedule=False, n_init=2, seed=1)
    opts.update(kw)
    return model, Relearn(model.encoders, CLASSES, **opts)


def _features(model, n, seed):
    x, y = batch(NAMES, n=n, seed=seed)
    model.eval()
    with torch.no_grad():
        return model.encode(x), y


def test_optimizer_state_of_reinitialised_parameters_is_kept():
    model, method = _method()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batch(NAMES, n=12, seed=4)
    model.train()
    torch.nn.functional.cross_entropy(model(x, labels=y).logits, y).backward()
    opt.step()
    momentum = {id(p): opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    method.split_features(1, train=_features(model, 30, 5), heldout=_features(model, 12, 6))
    assert method.done == 1
    for p in model.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], momentum[id(p)])


def test_reinit_count_and_state_round_trip():
    model, method = _method()
    tr, va = _features(model, 30, 5), _features(model, 12, 6)
    method.split_features(0, train=tr, heldout=va)  # epoch 0: never (ours.py:418)
    assert method.done == 0
    method.split_features(1, train=tr, heldout=va)
    method.split_features(2, train=tr, heldout=va)
    method.split_features(3, train=tr, heldout=va)  # reinit_num = 2
    assert method.done == 2 and method.last_epoch == 2
    state = method.state_dict()
    other_model, other = _method()
    other.load_state_dict(state)
    assert other.done == 2 and other.last == method.last
    for u in NAMES:
        for n, t in method.init[u].items():
            assert torch.equal(other.init[u][n], t)
    row = other.trace_row()
    assert set(row) == {"relearn_reinits", *(f"relearn_{k}/{u}" for k in ("w", "gap") for u in NAMES)}
    _, two = _method()
    two.modalities = ("audio", "visual")
    with pytest.raises(ValueError, match="modalities"):
        two.load_state_dict(state)


def test_no_heldout_features_is_an_error_naming_it():
    model, method = _method()
    with pytest.raises(ValueError, match="held-out"):
        method.split_features(1, train=_features(model, 30, 5), heldout=None)


@pytest.mark.parametrize("key, value", [("lam", 0.0), ("lam", "x"), ("reinit_epoch", 0), ("reinit_num", -1),
                                        ("n_init", 0), ("buffers", "yes"), ("scale_schedule", 1)])
def test_bad_options_are_named(key, value):
    with pytest.raises(ValueError, match=f"option {key}"):
        Relearn.resolve_options({key: value})


def test_constructor_checks():
    model = tiny_model(NAMES, heads=False)
    with pytest.raises(TypeError, match="encoders"):
        Relearn([1, 2], CLASSES)
    with pytest.raises(ValueError, match="two or more"):
        Relearn({"audio": model.encoders["audio"]}, CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        Relearn(model.encoders, 0)


# ----------------------------------------------------------------------------- through the trainer
def _cfg(where, **method):
    spec = {"name": "relearn", "n_init": 2, **method}
    return tiny_config(where, method=spec, model_options={"builder": "generic", "hidden": 8, "out_dim": 8})


def test_reinit_happens_between_epochs_from_checkpointed_weights(tmp_path):
    """Scaled to 4 epochs the period is 1: re-initialised after epochs 1 and 2 (not 0, not after the
    last); the checkpoint of an epoch holds the evaluated weights, before the re-initialisation."""
    seen = []

    def cb(event, info):
        if event == "epoch_end":
            method = info["trainer"].method
            state = info["trainer"].model.state_dict()
            seen.append((info["epoch"], method.done, {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}))

    run = train(_cfg(tmp_path), datasets=tiny_bundle(), callbacks=[cb])
    assert [(e, d) for e, d, _ in seen] == [(0, 0), (1, 0), (2, 1), (3, 2)]
    rows = load_run(run.run_dir).metrics
    assert [r["relearn_reinits"] for r in rows] == [0, 0, 1, 2]
    last = load_checkpoint_file(run.run_dir / "last.pt")
    assert last["method"]["done"] == 2
    for k, v in seen[-1][2].items():
        assert torch.equal(last["model"][k], v), k
    results = json.loads((run.run_dir / "results.json").read_text())
    assert results["val_protocol"] == "cross-fit"


def test_interrupted_across_a_reinit_and_resumed_equals_uninterrupted(tmp_path):
    full = train(_cfg(tmp_path / "full"), datasets=tiny_bundle())
    cut = _cfg(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), callbacks=[stop_after(1)])  # the next step re-initialises
    resumed = train(cut, resume=True, datasets=tiny_bundle())
    a, b = load_checkpoint_file(full.run_dir / "last.pt"), load_checkpoint_file(resumed.run_dir / "last.pt")
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert repr(a["method"]) == repr(b["method"]) and a["method"]["done"] == 2
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


def test_refused_without_validation(tmp_path):
    with pytest.raises(ValueError, match="relearn.*validation"):
        train(_cfg(tmp_path), datasets=tiny_bundle(val=False))


class _Recorder(BalancingMethod):
    """A method that only records what the split-features hook hands it."""

    name = "split_recorder"
    fits_on_validation = True
    cross_fit = "split"
    wants_split_features = True

    def __init__(self) -> None:
        self.calls: list = []

    def split_features_due(self, epoch: int) -> bool:
        return epoch != 1

    def split_features(self, epoch, *, train, heldout):
        self.calls.append((epoch, {u: tuple(f.shape) for u, f in train[0].items()}, train[1].tolist(),
                           tuple(heldout[1].shape)))


def test_the_generic_hook_gets_the_whole_training_split_and_validation_half_a(tmp_path):
    bundle = tiny_bundle()
    rec = _Recorder()
    train(_cfg(tmp_path), datasets=bundle, method=rec)
    n_train, n_val = len(bundle.train), len(bundle.val)
    assert [c[0] for c in rec.calls] == [0, 2]  # due after 0 and 2; never after the last epoch (3)
    for _, shapes, labels, held in rec.calls:
        assert all(s[0] == n_train for s in shapes.values())
        assert labels == bundle.train.labels.tolist()  # in order, the whole split
        assert held == (len(halves(n_val, 3)[0]),) == (n_val // 2,)


# ----------------------------------------------------------------------------- by name, CLI, 3 modalities
def test_cli_trains_relearn_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "relearn"
    assert train_cli(path, "relearn", run, "--method-opt", "n_init=2", epochs=4, lr=0.05) == 0
    assert results(run)["method"] == "relearn" and results(run)["modalities"] == ["a", "b", "c"]
    assert results(run)["val_protocol"] == "cross-fit"
    rows = load_run(run).metrics
    assert rows[-1]["relearn_reinits"] == 2
    assert all({"relearn_w/a", "relearn_w/b", "relearn_w/c", "relearn_gap/c"} <= set(r) for r in rows)
    assert all(0.0 <= rows[-1][f"relearn_w/{u}"] < 1.0 for u in "abc")
    capsys.readouterr()
    assert evaluates(run / "best.pt")


def test_a_chain_forwards_the_hook(tmp_path):
    run = train(tiny_config(tmp_path, method={"name": "relearn+mdrop", "n_init": 2},
                            model_options={"builder": "generic", "hidden": 8, "out_dim": 8}), datasets=tiny_bundle())
    assert load_checkpoint_file(run.run_dir / "last.pt")["method"]["relearn"]["done"] == 2
