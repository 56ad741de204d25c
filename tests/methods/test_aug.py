"""AUG (``aug``): its pieces, the optimizer groups of the layers it grows, exact resume after a
layer was added, the released mode, refusals, and ``ogmge train --method aug`` on three
bring-your-own modalities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ogmge.interfaces.cli import main
from ogmge.methods import AUG, AUGHead, BuildContext, get
from ogmge.methods.aug import boosted_loss, merge_weights, modality_to_boost
from ogmge.training import Trainer, load_checkpoint_file, load_run, train
from ogmge.training.balancing import check_method
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import Stop, metric_rows, stop_after, tiny_bundle, tiny_config


def cfg(where, **method):
    return tiny_config(where, method={"name": "aug", **method}, model_options={"builder": "generic", "hidden": 8,
                                                                                 "out_dim": 8}, epochs=4)


# ------------------------------------------------------------------------------ pieces
def test_boosted_loss_is_ce_without_layers_and_the_released_soft_target_form_with_them():
    g = torch.Generator().manual_seed(0)
    total, prev, last = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(boosted_loss(total, None, None, y), F.cross_entropy(total, y))
    # train_CREMAD.py:57 with one-hot targets: CE(last, y * softmax(prev)) is a soft-target CE
    soft = F.one_hot(y, 3).double() * prev.softmax(1)
    expected = (F.cross_entropy(total, y) + F.cross_entropy(prev, y) + F.cross_entropy(last, y)
                - 0.5 * F.cross_entropy(last, soft))
    torch.testing.assert_close(boosted_loss(total, prev, last, y, residual_weight=0.5), expected, rtol=1e-12,
                               atol=1e-12)


def test_merge_weights_by_name():
    assert merge_weights(["visual", "audio"]) == {"visual": 0.6, "audio": 0.4}
    assert merge_weights(["a", "b", "c"]) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert merge_weights(["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert merge_weights(["a", "b"], "b=2, a=1") == {"a": 1.0, "b": 2.0}
    for bad in ("a=1", "a=1,b=-1", "a=1,z=1", "a=x,b=1", "a=0,b=0", "a=1,a=1,b=1"):
        with pytest.raises(ValueError, match="merge_weights"):
            merge_weights(["a", "b"], bad)


def test_the_band_rule_is_the_released_one_for_two_modalities_but_a_sliver():
    for r in [*np.linspace(0.9, 1.1, 80), 0.98999, 0.9901, 1.00999, 1.01001]:
        released = "visual" if r > 1.01 else "audio" if r < 0.99 else None  # train_CREMAD.py:222-228
        if 0.99 <= r < 1 / 1.01:  # the one sliver where 1/r > 1.01 leaves the band while r does not
            released = "audio"
        assert modality_to_boost({"audio": r, "visual": 1 / r}, 1.0, 0.01) == released, r
    assert modality_to_boost({"a": float("nan"), "b": 1.0}, 1.0, 0.01) is None


def test_head_state_rebuilds_and_shrinks_its_layers():
    torch.manual_seed(0)
    head = AUGHead({"a": 4, "b": 3}, 5, hidden=6)
    gen = torch.Generator().manual_seed(1)
    head.add_layer("b", gen)
    head.add_layer("b", gen)
    head.add_layer("a", gen)
    x = {"a": torch.randn(2, 4), "b": torch.randn(2, 3)}
    fresh = AUGHead({"a": 4, "b": 3}, 5, hidden=6)
    fresh.load_state_dict(head.state_dict())
    assert fresh.layers() == {"a": 1, "b": 2}
    assert torch.equal(fresh(x), head(x))
    smaller = AUGHead({"a": 4, "b": 3}, 5, hidden=6)
    smaller.add_layer("b", gen)
    fresh.load_state_dict(smaller.state_dict())
    assert fresh.layers() == {"a": 0, "b": 1}
    # prediction: the weighted merge of the modalities' own logits
    parts = head.linear_split(x)
    torch.testing.assert_close(head(x), 0.5 * parts["a"] + 0.5 * parts["b"])


def test_half_precision_features_run_the_head_under_autocast():
    head = AUGHead({"a": 4, "b": 3}, 5, hidden=6)
    head.add_layer("a", torch.Generator().manual_seed(0))
    method = AUG(head)
    x = torch.randn(8, 4).to(torch.bfloat16)  # what an AMP forward leaves
    loss, total = method.modality_loss("a", x, torch.arange(8) % 5)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and total.dtype == torch.bfloat16


def test_bad_options_are_named():
    cls = get("aug")
    for key, value in (("tolerance", -1.0), ("lam", 0.0), ("hidden", 0), ("check_every", -1)):
        with pytest.raises(ValueError, match=f"option {key}"):
            cls.resolve_options({key: value})
    with pytest.raises(ValueError, match="merge_weights"):
        cls.wrap_fusion(AUGHead({"a": 2, "b": 2}, 3), merge_weights="a=1")


def test_build_needs_its_head_and_ddp_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="AUGHead"):
        AUG.build(BuildContext(modalities=("a", "b"), feature_dims={"a": 2, "b": 2}, num_classes=3))
    head = AUGHead({"a": 2, "b": 2}, 3)
    method = AUG.build(BuildContext(modalities=("a", "b"), fusion=head, epochs=200))
    assert method.period == 20 and method.is_check_epoch(0) and method.is_check_epoch(19)
    assert not method.is_check_epoch(20)
    with pytest.raises(ValueError, match="re-wrapped"):
        check_method(method, distributed=True, has_val=True)


# ------------------------------------------------------------------------------ through the trainer
def test_added_layers_join_the_optimizer_and_train(tmp_path):
    trainer = Trainer(cfg(tmp_path, check_every=1, tolerance=0.0), datasets=tiny_bundle())
    n0 = len(trainer.optimizer.param_groups)
    trainer.fit()
    added = trainer.method.added
    # tolerance 0: a layer at every check from epoch 0, added at the next epoch's start (none after the last)
    assert [e for e, _ in added] == [0, 1, 2]
    assert len(trainer.optimizer.param_groups) == n0 + len(added)
    last = load_checkpoint_file(tmp_path / "run" / "last.pt")
    assert len(last["optimizer_groups"]) == n0 + len(added)
    assert all(name.startswith("fusion.boost.") for g in last["optimizer_groups"][n0:] for name in g)
    # the first layer trained after it was added: its bias (zero at initialisation) moved
    assert last["model"][f"fusion.boost.{added[0][1]}.0.bias"].abs().max() > 0
    # the model ends with the selected epoch's layers (the checkpoint's state shrinks the head)
    best = load_checkpoint_file(tmp_path / "run" / "best.pt")
    assert trainer.model.fusion.layers() == best["model"]["fusion._extra_state"]["layers"]


def test_as_released_layers_stay_at_their_initialisation(tmp_path):
    trainer = Trainer(cfg(tmp_path, check_every=1, tolerance=0.0, as_released=True), datasets=tiny_bundle())
    n0 = len(trainer.optimizer.param_groups)
    trainer.fit()
    assert len(trainer.method.added) == 3 and len(trainer.optimizer.param_groups) == n0
    last = load_checkpoint_file(tmp_path / "run" / "last.pt")
    biases = [v for k, v in last["model"].items() if k.startswith("fusion.boost.") and k.endswith(".bias")]
    assert len(biases) == 3 and all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if n.startswith("fusion.boost."))


def test_resumed_after_a_layer_was_added_equals_the_uninterrupted_run(tmp_path):
    full = train(cfg(tmp_path / "full", check_every=1, tolerance=0.0), datasets=tiny_bundle())
    cut = cfg(tmp_path / "cut", check_every=1, tolerance=0.0)
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), callbacks=[stop_after(1)])
    mid = load_checkpoint_file(cut.out + "/last.pt")
    assert len(mid["optimizer_groups"]) == 2  # a layer (an optimizer group) was added before the cut
    assert mid["method"]["target"] is not None  # and the next one is decided, to be added on resume
    resumed = train(cut, resume=True, datasets=tiny_bundle())
    a, b = load_checkpoint_file(full.run_dir / "last.pt"), load_checkpoint_file(resumed.run_dir / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert a["optimizer_groups"] == b["optimizer_groups"]
    for i, state in a["optimizer"]["state"].items():
        for key, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][key])), (i, key)
    assert a["method"]["added"] == b["method"]["added"]
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


def test_cli_trains_aug_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "aug"
    assert train_cli(path, "aug", run, "--method-opt", "check_every=1", epochs=3) == 0
    assert results(run)["method"] == "aug" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert all({"aug_layers/a", "aug_layers/b", "aug_layers/c"} <= set(t) for t in trace)
    assert any(t["aug_layers/a"] + t["aug_layers/b"] + t["aug_layers/c"] >= 1 for t in trace)
    assert {"aug_ratio/a", "aug_ratio/b", "aug_ratio/c"} <= set(trace[-1])
    ckpt = load_checkpoint_file(run / "last.pt")
    assert ckpt["model"]["fusion.weights"].tolist() == pytest.approx([1 / 3] * 3)
    capsys.readouterr()
    assert evaluates(run / "last.pt") and evaluates(run / "best.pt")


# ------------------------------------------------------------------------------ fitted predictions
def _branches_by_hand(sd: dict, features: dict) -> dict:
    """``z_u = g(relu(A_u f + a_u)) + sum_k g(relu(B_{u,k} f + b_{u,k}))`` in float64 from a state dict."""
    def lin(prefix, x):
        return x @ sd[prefix + ".weight"].double().T + sd[prefix + ".bias"].double()

    out = {}
    for u, f in features.items():
        f = f.double()
        z = lin("fusion.fc_out", torch.relu(lin(f"fusion.embed.{u}.0", f)))
        k = 0
        while f"fusion.boost.{u}.{k}.weight" in sd:
            z = z + lin("fusion.fc_out", torch.relu(lin(f"fusion.boost.{u}.{k}", f)))
            k += 1
        out[u] = z
    return out


def _pool_by_hand(members: dict, weights, order) -> torch.Tensor:
    return sum(float(w) * members[m].log_softmax(1) for w, m in zip(weights, order))


@pytest.mark.parametrize("rule", ["blend", "ensemble"])
def test_fitted_prediction_is_the_stacked_pool_of_the_branches_computed_by_hand(tmp_path, rule):
    from ogmge.methods import BranchView
    from ogmge.methods.uni_ensemble import fit_simplex_weights
    from ogmge.training import load_checkpoint

    config = tiny_config(tmp_path, method={"name": "aug", "check_every": 1, "tolerance": 0.0}, prediction=rule,
                         model_options={"builder": "generic", "hidden": 8, "out_dim": 8}, epochs=3)
    result = train(config, datasets=tiny_bundle())
    assert json.loads((result.run_dir / "results.json").read_text())["val_protocol"] == "cross-fit"
    ck = load_checkpoint_file(result.run_dir / "last.pt")
    assert not any(k.startswith("heads.") for k in ck["model"])  # the heads are views: nothing twice
    assert any(k.startswith("fusion.boost.") for k in ck["model"])  # layers were added (they enter z_u)
    model = load_checkpoint(result.run_dir / "last.pt").model
    assert all(isinstance(h, BranchView) for h in model.heads.values())
    order = model.prediction_members
    assert order == (("fused", "a", "b") if rule == "blend" else ("a", "b"))
    val = tiny_bundle().val
    inputs = {"a": val.a, "b": val.b}
    with torch.no_grad():
        z = _branches_by_hand(ck["model"], model.encode(inputs))
        w_merge = ck["model"]["fusion.weights"].double()
        members = {**z, "fused": w_merge[0] * z["a"] + w_merge[1] * z["b"]}
        # the weights kept are the stacked fit on the whole validation split (tolerance 1e-4: float32 outputs)
        torch.testing.assert_close(model.ensemble_weights.double(),
                                   fit_simplex_weights(members, val.labels, order), atol=1e-4, rtol=0)
        torch.testing.assert_close(model(inputs).logits.double(), _pool_by_hand(members, model.ensemble_weights, order),
                                   atol=1e-5, rtol=1e-5)
        inner = [0.2, 0.3, 0.5] if rule == "blend" else [0.35, 0.65]  # off the simplex's vertices
        model.set_ensemble_weights(inner)
        torch.testing.assert_close(model(inputs).logits.double(), _pool_by_hand(members, inner, order),
                                   atol=1e-5, rtol=1e-5)


def test_the_prediction_rule_changes_the_prediction_never_the_training(tmp_path):
    runs = {}
    for rule in ("blend", "ensemble"):
        config = tiny_config(tmp_path / rule, method={"name": "aug", "check_every": 1, "tolerance": 0.0},
                             prediction=rule, model_options={"builder": "generic", "hidden": 8, "out_dim": 8},
                             epochs=3)
        runs[rule] = load_checkpoint_file(train(config, datasets=tiny_bundle()).run_dir / "last.pt")["model"]
    a, b = runs["blend"], runs["ensemble"]
    shared = [k for k in a if not k.startswith("combiner.") and torch.is_tensor(a[k])]
    assert any(k.startswith("fusion.fc_out") for k in shared)
    # under ``ensemble`` the AUG head still trains (the model freezes only the fusion head it was built with)
    for k in shared:
        assert torch.equal(a[k], b[k]), k


def test_build_refuses_a_frozen_head_and_heads_that_are_not_its_views():
    from ogmge.methods import BranchView

    head = AUGHead({"a": 2, "b": 2}, 3)
    linear = {m: torch.nn.Linear(2, 3) for m in ("a", "b")}
    with pytest.raises(ValueError, match=r"heads \['a', 'b'\] are not views of its AUGHead.*AUG.wrap_heads"):
        AUG.build(BuildContext(modalities=("a", "b"), fusion=head, heads=linear))
    views = dict(AUG.wrap_heads(torch.nn.ModuleDict(linear), head).items())
    assert all(isinstance(v, BranchView) for v in views.values())
    AUG.build(BuildContext(modalities=("a", "b"), fusion=head, heads=views))
    with pytest.raises(ValueError, match=r"heads \['b'\] are not views"):
        AUG.build(BuildContext(modalities=("a", "b"), fusion=head,
                               heads={**views, "b": BranchView(AUGHead({"a": 2, "b": 2}, 3), "b")}))
    head.fc_out.requires_grad_(False)
    with pytest.raises(ValueError, match=r"fc_out.weight.*frozen.*wrap_fusion"):
        AUG.build(BuildContext(modalities=("a", "b"), fusion=head, epochs=4))


def test_cli_prediction_rules_aug_takes_all_three_and_mla_names_the_ones_it_has(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    assert train_cli(path, "aug", tmp_path / "e", "--prediction", "ensemble", epochs=1, lr=None) == 0
    assert results(tmp_path / "e")["prediction"] == "ensemble"
    capsys.readouterr()
    assert train_cli(path, "mla", tmp_path / "m", "--prediction", "ensemble", epochs=1, lr=None) == 2
    err = capsys.readouterr().err
    assert "method mla supports the predictions ['fused', 'blend'], got prediction 'ensemble': give one of those" in err
    assert "Traceback" not in err
    assert train_cli(path, "aug+ogm_ge", tmp_path / "c", "--prediction", "blend", epochs=1, lr=None) == 2
    assert "method aug+ogm_ge supports the predictions ['fused']" in capsys.readouterr().err


def test_cli_trains_aug_with_the_stacked_rule_on_three_byo_modalities_and_resumes_exactly(tmp_path, capsys,
                                                                                         monkeypatch):
    path = three_modality_npz(tmp_path)
    args = ("--prediction", "blend", "--method-opt", "check_every=1", "--method-opt", "tolerance=0")
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_cli(path, "aug", full, *args, epochs=3) == 0
    assert results(full)["prediction"] == "blend" and results(full)["val_protocol"] == "cross-fit"
    row = load_run(full).metrics[-1]
    assert {"blend_w/fused", "blend_w/a", "blend_w/b", "blend_w/c"} <= set(row)
    assert sum(row[f"blend_w/{m}"] for m in ("fused", "a", "b", "c")) == pytest.approx(1.0)
    # interrupted in the second epoch (after its first layer was added), then resumed
    steps = {"n": 0}
    for opt in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        def step(self, *a, _real=opt.step, **k):
            if (cut / "last.pt").is_file():
                steps["n"] += 1
                if steps["n"] == 3:
                    raise KeyboardInterrupt
            return _real(self, *a, **k)

        monkeypatch.setattr(opt, "step", step)
    assert train_cli(path, "aug", cut, *args, epochs=3) == 130
    monkeypatch.undo()
    assert load_checkpoint_file(cut / "last.pt")["epoch"] == 0
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    a, b = load_checkpoint_file(full / "last.pt"), load_checkpoint_file(cut / "last.pt")
    assert a["model"].keys() == b["model"].keys() and "combiner.weights" in a["model"]
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert a["optimizer_groups"] == b["optimizer_groups"] and len(a["optimizer_groups"]) > 1
    assert metric_rows(full) == metric_rows(cut)
    capsys.readouterr()
    assert evaluates(cut / "best.pt")
