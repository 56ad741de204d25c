"""AUG (``aug``): its pieces, the optimizer groups of the layers it grows, exact resume after a
layer was added, the released mode, refusals, and ``ogmge train --method aug`` on three
bring-your-own modalities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main
from ogmge.methods import AUG, AUGHead, BuildContext, get
from ogmge.methods.aug import boosted_loss, merge_weights, modality_to_boost
from ogmge.training import Trainer, load_checkpoint_file, load_run, train
from ogmge.training.balancing import check_method
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


def _byo(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    mods = {"a": rng.normal(size=(n, 5)).astype(np.float32) + labels[:, None],
            "b": rng.normal(size=(n, 4)).astype(np.float32) + 0.3 * labels[:, None],
            "c": rng.normal(size=(n, 3)).astype(np.float32)}
    return save_byo(tmp_path / "three.npz", mods, labels, kinds={k: "vector" for k in mods})


def test_cli_trains_aug_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = _byo(tmp_path)
    run = tmp_path / "aug"
    assert main(["train", "--data", str(path), "--method", "aug", "--method-opt", "check_every=1",
                 "--epochs", "3", "--batch-size", "8", "--lr", "0.01",
                 "--set", "model_options={hidden: 8, out_dim: 8}", "--device", "cpu",
                 "--no-progress", "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == "aug" and results["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert all({"aug_layers/a", "aug_layers/b", "aug_layers/c"} <= set(t) for t in trace)
    assert any(t["aug_layers/a"] + t["aug_layers/b"] + t["aug_layers/c"] >= 1 for t in trace)
    assert {"aug_ratio/a", "aug_ratio/b", "aug_ratio/c"} <= set(trace[-1])
    ckpt = load_checkpoint_file(run / "last.pt")
    assert ckpt["model"]["fusion.weights"].tolist() == pytest.approx([1 / 3] * 3)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "last.pt")]) == 0
    assert main(["eval", "--checkpoint", str(run / "best.pt")]) == 0
