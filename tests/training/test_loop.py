"""The training loop on tiny stand-ins: determinism, exact resume, atomic checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch

from ogmge.training import TrainConfig, atomic_save, load_checkpoint_file, load_run, train
from ogmge.training import checkpoint as ckpt_mod
from ogmge.training.loop import _batch_loss
from support.training_standins import (
    Stop,
    metric_rows,
    stop_after,
    tiny_bundle,
    tiny_config,
    tiny_model,
)


def _weights(path):
    return load_checkpoint_file(path)["model"]


def test_same_seed_gives_identical_metrics_and_trace(tmp_path):
    a = train(tiny_config(tmp_path / "a", epochs=2), datasets=tiny_bundle(), model=tiny_model)
    b = train(tiny_config(tmp_path / "b", epochs=2), datasets=tiny_bundle(), model=tiny_model)
    assert metric_rows(a.run_dir) == metric_rows(b.run_dir)
    assert load_run(a.run_dir).trace() == load_run(b.run_dir).trace()
    c = train(tiny_config(tmp_path / "c", epochs=2, seed=4), datasets=tiny_bundle(), model=tiny_model)
    assert load_run(a.run_dir).trace() != load_run(c.run_dir).trace()


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path, caplog):
    full = train(tiny_config(tmp_path / "full"), datasets=tiny_bundle(), model=tiny_model)
    cfg = tiny_config(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cfg, datasets=tiny_bundle(), model=tiny_model, callbacks=[stop_after(1)])
    assert load_checkpoint_file(cfg.out + "/last.pt")["epoch"] == 1
    with caplog.at_level(logging.INFO, logger="ogmge.training"):
        resumed = train(cfg, resume=True, datasets=tiny_bundle(), model=tiny_model)
    assert resumed.start_epoch == 2
    assert "starting at epoch 3 of 4 (index 2)" in caplog.text
    w_full, w_cut = _weights(full.run_dir / "last.pt"), _weights(resumed.run_dir / "last.pt")
    assert w_full.keys() == w_cut.keys()
    for k in w_full:
        assert torch.equal(w_full[k], w_cut[k]), k
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
    assert [r["epoch"] for r in metric_rows(resumed.run_dir)] == [0, 1, 2, 3]
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()
    assert full.test_metrics == resumed.test_metrics


def test_resume_with_more_epochs_continues(tmp_path):
    first = train(tiny_config(tmp_path, epochs=2), datasets=tiny_bundle(), model=tiny_model)
    more = train(tiny_config(tmp_path, epochs=3), resume=True, datasets=tiny_bundle(), model=tiny_model)
    assert first.history[-1]["epoch"] == 1 and more.start_epoch == 2
    assert [r["epoch"] for r in load_run(more.run_dir).metrics] == [0, 1, 2]


def test_resume_after_checkpoint_deleted_fails_clearly(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    (tmp_path / "run" / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"cannot resume .*last\.pt is missing"):
        train(cfg.replace(epochs=2), resume=True, datasets=tiny_bundle(), model=tiny_model)


def test_resume_with_different_config_names_the_settings(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    with pytest.raises(ValueError, match=r"differs .* in method.alpha, optimisation.lr "
                                         r"\(method.alpha: checkpoint 0.5, now 0.3; optimisation.lr"):
        train(cfg.replace(epochs=2, alpha=0.3, lr=0.1), resume=True, datasets=tiny_bundle(), model=tiny_model)


def test_new_run_refuses_to_overwrite_a_run(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, datasets=tiny_bundle(), model=tiny_model)


def test_atomic_save_keeps_previous_checkpoint_on_failure(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, epochs=1)
    train(cfg, datasets=tiny_bundle(), model=tiny_model)
    path = tmp_path / "run" / "last.pt"
    before = load_checkpoint_file(path)

    def broken_save(obj, fh):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="injected"):
        atomic_save({"anything": 1}, path)
    monkeypatch.undo()
    after = load_checkpoint_file(path)
    assert after["epoch"] == before["epoch"]
    for k in before["model"]:
        assert torch.equal(after["model"][k], before["model"][k])
    assert sorted(p.name for p in path.parent.iterdir() if ".tmp" in p.name) == []


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint_file(path)


def test_model_selection_uses_validation_or_last_epoch(tmp_path):
    with_val = train(tiny_config(tmp_path / "v", epochs=3), datasets=tiny_bundle(), model=tiny_model)
    accs = [r["val/acc"] for r in with_val.history]
    assert with_val.selected_by == "val acc"
    assert with_val.best_epoch == accs.index(max(accs))
    no_val = train(tiny_config(tmp_path / "n", epochs=3, val_fraction=0.0), datasets=tiny_bundle(val=False),
                   model=tiny_model)
    assert no_val.selected_by == "last epoch" and no_val.best_epoch == 2
    assert load_checkpoint_file(tmp_path / "n" / "run" / "best.pt")["epoch"] == 2
    assert not any(k.startswith("val/") for k in no_val.history[-1])


def test_normal_mode_traces_coefficients_without_modulating(tmp_path):
    r = train(tiny_config(tmp_path, epochs=1, modulation="Normal"), datasets=tiny_bundle(), model=tiny_model)
    trace = load_run(r.run_dir).trace()
    assert len(trace) == 3  # 48 samples / batch 16
    assert all(t["modulated"] is False and t["skip_reason"] == "mode Normal" for t in trace)
    assert all({"score/a", "ratio/b", "coeff/a"} <= set(t) for t in trace)


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_other_optimizers_train(tmp_path, opt):
    """The named optimizer is the one that stepped (its state in the checkpoint), and it moved
    the parameters."""
    bundle = tiny_bundle()
    model = tiny_model(bundle, None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = train(tiny_config(tmp_path, epochs=1, optimizer=opt, lr=1e-2, weight_decay=0.01, val_fraction=0.0),
              datasets=bundle, model=model)
    saved = load_checkpoint_file(r.run_dir / "last.pt")["optimizer"]
    group = saved["param_groups"][0]
    state_keys = {k for s in saved["state"].values() for k in s}
    if opt == "sgd":
        assert "momentum_buffer" in state_keys and "exp_avg" not in state_keys
        assert group["momentum"] == 0.9
    else:
        assert {"exp_avg", "exp_avg_sq"} <= state_keys and "momentum_buffer" not in state_keys
        assert group["decoupled_weight_decay"] is (opt == "adamw")
    assert group["weight_decay"] == 0.01
    after = r.model.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k].to(before[k].device))]
    assert moved == list(before), f"parameters the {opt} step left unchanged: {set(before) - set(moved)}"


def test_unimodal_subset_trains_without_modulator(tmp_path):
    bundle = tiny_bundle()
    from ogmge.training.data import select_modalities

    sub = type(bundle)(*(select_modalities(d, ["a"]) for d in (bundle.train, bundle.val, bundle.test)))
    r = train(tiny_config(tmp_path, epochs=1, modalities=["a"]), datasets=sub, model=tiny_model)
    assert "val/modality_acc/a" in r.history[0] and "val/modality_acc/b" not in r.history[0]
    assert "modality_acc/a" in r.test_metrics and "modality_acc/b" not in r.test_metrics


@dataclass
class _Out:
    logits: torch.Tensor
    sample_keep: torch.Tensor | None


def test_loss_uses_only_kept_samples():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    keep = torch.tensor([True, False, True])
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(_batch_loss(_Out(logits, keep), labels), expected, atol=1e-7)
    full = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(_batch_loss(_Out(logits, None), labels), full, atol=1e-7)


def test_load_checkpoint_and_predict_with_custom_model(tmp_path):
    from ogmge.training import load_checkpoint, predict
    from support.training_standins import TinyModel

    r = train(tiny_config(tmp_path, epochs=1), datasets=tiny_bundle(), model=tiny_model)
    with pytest.raises(ValueError, match="custom model; pass model="):
        load_checkpoint(r.run_dir / "best.pt")
    ck = load_checkpoint(r.run_dir / "best.pt", model=TinyModel())
    assert ck.epoch == r.best_epoch and ck.class_names == ["x", "y", "z"]
    ds = tiny_bundle().test
    x = {"a": ds.a[:5], "b": ds.b[:5]}
    out = predict(ck, x)
    expected = r.model.eval()(x).logits.argmax(1)
    assert torch.equal(out["pred"], expected)
    assert out["probs"].shape == (5, 3) and set(out["modality_pred"]) == {"a", "b"}


def test_train_without_run_dir_keeps_best_weights_in_memory(tmp_path):
    r = train(tiny_config(tmp_path, out=None, epochs=3, eval_test_every_epoch=True), datasets=tiny_bundle(),
              model=tiny_model)
    assert r.run_dir is None and not (tmp_path / "run").exists()
    assert r.best_epoch < 2  # the final test evaluation had to restore an earlier epoch's weights
    assert r.test_metrics["acc"] == r.history[r.best_epoch]["test/acc"]


def test_test_split_is_evaluated_once_at_the_end_by_default(tmp_path):
    """DESIGN §3: per-epoch rows carry validation metrics only; test is evaluated after
    training on the selected weights, giving what a per-epoch test log shows at that epoch."""
    assert TrainConfig().eval_test_every_epoch is False
    default = train(tiny_config(tmp_path / "d", epochs=3), datasets=tiny_bundle(), model=tiny_model)
    every = train(tiny_config(tmp_path / "e", epochs=3, eval_test_every_epoch=True), datasets=tiny_bundle(),
                  model=tiny_model)
    assert all("val/acc" in row and not any(k.startswith("test/") for k in row) for row in default.history)
    assert all("test/acc" in row for row in every.history)
    assert default.best_epoch == every.best_epoch
    assert default.test_metrics == every.test_metrics
    assert default.test_metrics["acc"] == every.history[every.best_epoch]["test/acc"]
