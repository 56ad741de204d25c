"""Raw tracebacks: each case now ends in a clear error naming the file, setting or value
(the CLI prints ``ogmge <command>: error: ...`` and exits 2)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from ogmge import OGMGE
from ogmge.data.byo import load_byo
from ogmge.training import DataBundle, TrainConfig, train
from support.reliability_helpers import cli, tiny_npz

TRAIN = ("--epochs", "1", "--device", "cpu", "--no-progress", "--set", "model_options={hidden: 4, out_dim: 8}")


def _train_error(capsys, data, out, *extra) -> str:
    capsys.readouterr()
    assert cli("train", "--data", data, *TRAIN, "--out", out, *extra) == 2
    return capsys.readouterr().err


def test_empty_npz(tmp_path, capsys):
    (tmp_path / "e.npz").write_bytes(b"")
    err = _train_error(capsys, tmp_path / "e.npz", tmp_path / "run")
    assert "e.npz is empty" in err


def test_truncated_npz(tmp_path, capsys):
    full = tiny_npz(tmp_path / "full.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(full[: len(full) // 2])
    err = _train_error(capsys, tmp_path / "t.npz", tmp_path / "run")
    assert "t.npz is not a readable .npz file" in err and "truncated" in err


def test_invalid_manifest_json_names_file_and_line(tmp_path):
    d = tmp_path / "dj"
    d.mkdir()
    np.save(d / "a.npy", np.ones((4, 2)))
    np.save(d / "labels.npy", np.arange(4) % 2)
    (d / "manifest.json").write_text('{"labels": "labels.npy",\n "modalities": {"a": "a.npy",}\n}\n')
    with pytest.raises(ValueError, match=r"manifest\.json, line 2: not valid JSON"):
        load_byo(d)


def test_invalid_manifest_yaml_names_file_and_line(tmp_path):
    d = tmp_path / "dy"
    d.mkdir()
    np.save(d / "a.npy", np.ones((4, 2)))
    np.save(d / "labels.npy", np.arange(4) % 2)
    (d / "manifest.yaml").write_text("labels: labels.npy\nmodalities:\n  a: {file: a.npy\n  b: [\n")
    with pytest.raises(ValueError, match=r"manifest\.yaml, line \d+: not valid YAML"):
        load_byo(d)


def test_meta_kinds_not_a_mapping(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, labels=np.arange(4) % 2, a=np.ones((4, 2)), __meta__=np.asarray(json.dumps({"kinds": ["vector"]})))
    with pytest.raises(ValueError, match=r"m\.npz: '__meta__' field 'kinds' must map"):
        load_byo(path)


def test_class_names_given_as_a_string(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, labels=np.arange(4) % 2, a=np.ones((4, 2)), __meta__=np.asarray(json.dumps({"class_names": "ab"})))
    with pytest.raises(ValueError, match=r"c\.npz: class_names must be a list of names.*'ab'"):
        load_byo(path)


def test_object_array_is_named(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, labels=np.arange(4) % 2, a=np.ones((4, 2)), b=np.array([[1], [2], [3], [None]], dtype=object))
    with pytest.raises(ValueError, match=r"o\.npz: array 'b' holds Python objects"):
        load_byo(path)


def test_out_that_is_a_file(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    (tmp_path / "taken").write_text("a file\n")
    err = _train_error(capsys, data, tmp_path / "taken")
    assert "is a file, not a directory" in err
    assert (tmp_path / "taken").read_text() == "a file\n"


def test_unwritable_out(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    if os.geteuid() == 0:  # root writes anywhere: a path under a file is unwritable for anyone
        out = tmp_path / "d.npz" / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "run"
    err = _train_error(capsys, data, out)
    assert f"cannot write the run directory --out {out}" in err


@pytest.fixture()
def trained_run(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert cli("train", "--data", data, *TRAIN, "--out", run) == 0
    capsys.readouterr()
    return run


def test_eval_with_other_feature_size(tmp_path, capsys, trained_run):
    other = tiny_npz(tmp_path / "wide.npz", dim=7)
    assert cli("eval", "--checkpoint", trained_run, "--data", other, "--allow-data-change") == 2
    err = capsys.readouterr().err
    assert "modality 'a' is vector of per-sample shape (7,) in the data, vector of shape (4,)" in err


def test_eval_with_other_class_count(tmp_path, capsys, trained_run):
    other = tiny_npz(tmp_path / "two.npz", classes=2)
    assert cli("eval", "--checkpoint", trained_run, "--data", other, "--allow-data-change") == 2
    assert "the data have 2 classes, the checkpoint's model 3" in capsys.readouterr().err


def test_resume_with_other_feature_size(tmp_path, capsys, trained_run):
    other = tiny_npz(tmp_path / "wide.npz", dim=7)
    assert cli("train", "--resume", trained_run, "--epochs", "2", "--data", other, "--allow-data-change") == 2
    assert "cannot resume" in (err := capsys.readouterr().err) and "shape (7,)" in err


def test_resume_from_another_working_directory(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    tiny_npz(work / "d.npz")
    monkeypatch.chdir(work)
    assert cli("train", "--data", "d.npz", *TRAIN, "--out", "run") == 0
    monkeypatch.chdir(tmp_path)
    assert cli("train", "--resume", work / "run", "--epochs", "2") == 0
    assert cli("eval", "--checkpoint", work / "run") == 0


def test_empty_evaluation_split_with_three_modalities_is_named(tmp_path):
    full = load_byo(tiny_npz(tmp_path / "d.npz", modalities=("a", "b", "c")))
    bundle = DataBundle(full.subset(list(range(24))), full.subset([]), full.subset(list(range(24, 36))))
    cfg = TrainConfig(dataset="byo", data=str(tmp_path / "d.npz"), epochs=1, device="cpu", progress=False,
                      model_options={"hidden": 4, "out_dim": 8}, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="the val split is empty"):
        train(cfg, datasets=bundle)


def test_step_labels_out_of_range_name_value_and_class_count():
    enc = {n: nn.Linear(3, 3) for n in ("a", "b")}
    mod = OGMGE(enc, select="weights")
    logits = {n: torch.randn(2, 3) for n in enc}
    with pytest.raises(ValueError, match=r"labels hold 5, outside \[0, 3\) for logits of 3 classes"):
        mod.step(modality_logits=logits, labels=torch.tensor([0, 5]), epoch=0)
    with pytest.raises(ValueError, match=r"labels hold -1"):
        mod.step(modality_logits=logits, labels=torch.tensor([-1, 0]), epoch=0)


@pytest.mark.parametrize("fusion", ["film", "gated", "attention"])
def test_preset_with_other_fusion(fusion):
    from argparse import ArgumentParser

    from ogmge.interfaces.config_cli import add_config_flags, config_from_args

    p = ArgumentParser()
    add_config_flags(p)
    cfg = config_from_args(p.parse_args(["--config", "builtin_cpu", "--fusion", fusion]))
    assert cfg.fusion == fusion and cfg.estimator is None  # follows the fusion
    from ogmge.contracts import ModalitySpec
    from ogmge.training.factory import build_model_from_config

    specs = {"audio": ModalitySpec("audio", "spectrogram", (1, 16, 16)),
             "visual": ModalitySpec("visual", "video", (1, 3, 16, 16))}
    model, _ = build_model_from_config(cfg, specs, 6)
    assert set(model.encoders) == {"audio", "visual"}
