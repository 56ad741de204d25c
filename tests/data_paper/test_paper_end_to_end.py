"""Raw layouts -> prepare -> dataset -> DataLoader -> paper model with OGM-GE; resume; CLI."""

from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ogmge.data.prepare as prep
from ogmge.data.collate import collate_samples
from ogmge.data.paper import load_paper_dataset
from ogmge.data.paper.readers import select_frames
from ogmge.data.prepare import prepare_dataset
from support.paper_rawdata import KS_CLIPS, make_ave, make_cremad, make_kinetics, make_vggsound


@pytest.fixture(scope="module")
def cremad_raw(tmp_path_factory):
    return make_cremad(tmp_path_factory.mktemp("cremad_raw"))


@pytest.fixture(scope="module")
def cremad_cache(cremad_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("cremad_cache")
    report = prepare_dataset("cremad", cremad_raw, out, workers=2, progress=False)
    assert (report.listed, report.prepared, report.skipped) == (8, 8, [])
    return out


def test_cremad_cache_layout_and_contract(cremad_raw, cremad_cache):
    manifest = json.loads((cremad_cache / "manifest.json").read_text())
    assert manifest["dataset"] == "cremad" and manifest["audio_shape"] == [1, 257, 188]
    frames = np.load(cremad_cache / "clips" / "1001_DFA_NEU_XX" / "frames.npy", mmap_mode="r")
    assert frames.dtype == np.uint8 and frames.shape == (2, 256, 384, 3)  # 2 s video at 1 fps, 32x48 -> 256 short
    assert (cremad_cache / "skipped.txt").read_text() == ""
    train = load_paper_dataset("cremad", cremad_cache, split="train", val_fraction=0.5, seed=0)
    val = load_paper_dataset("cremad", cremad_cache, split="val", val_fraction=0.5, seed=0)
    test = load_paper_dataset("cremad", cremad_cache, split="test")
    assert (len(train), len(val), len(test)) == (3, 3, 2)
    assert not set(train.clips) & set(val.clips) and not (set(train.clips) | set(val.clips)) & set(test.clips)
    assert train.num_classes == 6 and train.class_names == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
    assert train.groups == [c.split("_")[0] for c in train.clips]
    assert {k: (s.kind, s.shape) for k, s in train.modalities.items()} == {
        "audio": ("spectrogram", (1, 257, 188)), "visual": ("video", (1, 3, 224, 224))}
    s = test[0]
    assert set(s) == {"inputs", "label"} and s["label"] == test.targets[0] == 0
    # the cached spectrogram equals the one computed from the raw WAV
    raw = load_paper_dataset("cremad", cremad_raw, split="test")
    assert raw.source == "raw" and test.source == "cache"
    torch.testing.assert_close(raw[0]["inputs"]["audio"], s["inputs"]["audio"], rtol=0, atol=0)
    # all clips at once; no validation split (paper setting)
    assert len(load_paper_dataset("cremad", cremad_cache, split="train", val_fraction=0)) == 6


def test_dataloader_workers_do_not_change_augmentation(cremad_cache):
    ds = load_paper_dataset("cremad", cremad_cache, split="train", val_fraction=0, image_size=32, seed=1)
    one = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate_samples)))
    two = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate_samples, num_workers=2)))
    assert torch.equal(one["inputs"]["visual"], two["inputs"]["visual"])
    ds.set_epoch(1)
    three = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate_samples)))
    assert not torch.equal(one["inputs"]["visual"], three["inputs"]["visual"])


def test_random_training_frames_are_the_frames_used(tmp_path):
    root = make_kinetics(tmp_path / "ks", video=False)
    cache = tmp_path / "cache"
    prepare_dataset("kinetics_sounds", root, cache, progress=False)
    levels = np.arange(10, dtype=np.uint8) * 20  # clip frames: constant images of distinct grey levels
    frames = np.broadcast_to(levels[:, None, None, None], (10, 256, 256, 3)).copy()
    clip = KS_CLIPS[1][0]
    np.save(cache / "clips" / clip / "frames.npy", frames)
    train = load_paper_dataset("kinetics_sounds", cache, split="train", val_fraction=0, image_size=8,
                               visual_dtype="float32")  # normalised frames, read back below
    i = train.clips.index(clip)
    mean, std = 0.485, 0.229
    for epoch in range(4):
        train.set_epoch(epoch)
        expect = select_frames(10, 3, train=True, generator=train.generator_for(i))
        got = train[i]["inputs"]["visual"][:, 0].mean(dim=(1, 2)) * std + mean
        np.testing.assert_allclose(got.numpy() * 255, levels[expect], atol=0.05)
    test_like = load_paper_dataset("kinetics_sounds", cache, split="train", val_fraction=0, image_size=8, train=False,
                                   visual_dtype="float32")
    got = test_like[i]["inputs"]["visual"][:, 0].mean(dim=(1, 2)) * std + mean
    np.testing.assert_allclose(got.numpy() * 255, levels[[1, 5, 8]], atol=0.05)


@pytest.mark.parametrize("name,maker,expect", [
    ("kinetics_sounds", make_kinetics, (31, (1, 128, 1024), 3)),
    ("vggsound", make_vggsound, (3, (1, 129, 626), 3)),
    ("ave", make_ave, (3, (1, 257, 625), 3)),
])
def test_other_datasets_prepare_and_read(tmp_path, name, maker, expect):
    root = maker(tmp_path / "raw")
    report = prepare_dataset(name, root, tmp_path / "cache", progress=False)
    assert report.skipped == [] and report.prepared == report.listed
    for where in (root, tmp_path / "cache"):
        ds = load_paper_dataset(name, where, split="train", val_fraction=0, image_size=16)
        assert ds.num_classes == expect[0]
        s = ds[0]
        assert s["inputs"]["audio"].shape == expect[1] == ds.modalities["audio"].shape
        assert s["inputs"]["visual"].shape == (expect[2], 3, 16, 16)
        assert torch.isfinite(s["inputs"]["audio"]).all()
        assert s["label"] == ds.targets[0]


def test_resume_after_kill_matches_uninterrupted(cremad_raw, cremad_cache, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real_save, calls = prep._save_array, []

    def dying_save(path, array):
        calls.append(path)
        real_save(path, array)
        if len(calls) == 7:  # clip 4: audio.npy written, frames.npy not -> killed mid-clip
            raise KeyboardInterrupt

    monkeypatch.setattr(prep, "_save_array", dying_save)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("cremad", cremad_raw, out, workers=1, progress=False)
    monkeypatch.setattr(prep, "_save_array", real_save)
    done = sorted(p.name for p in (out / "clips").iterdir())
    assert len([d for d in done if not d.startswith(".tmp-")]) == 3 and any(d.startswith(".tmp-") for d in done)
    report = prepare_dataset("cremad", cremad_raw, out, workers=1, progress=False)
    assert (report.already_done, report.prepared) == (3, 5)
    cmp = filecmp.dircmp(cremad_cache, out)
    assert sorted(os.listdir(out / "clips")) == sorted(os.listdir(cremad_cache / "clips"))
    for clip in os.listdir(out / "clips"):
        for f in ("audio.npy", "frames.npy"):
            assert filecmp.cmp(out / "clips" / clip / f, cremad_cache / "clips" / clip / f, shallow=False)
    for f in ("manifest.json", "skipped.txt", "splits/train.csv", "splits/test.csv"):
        assert filecmp.cmp(out / f, cremad_cache / f, shallow=False)
    assert not cmp.left_only and not cmp.right_only


def test_cli_prepare(cremad_raw, tmp_path, capsys):
    from ogmge.interfaces.cli import main

    rc = main(["prepare", "cremad", "--source", str(cremad_raw), "--out", str(tmp_path / "c"), "--workers", "1",
               "--no-progress"])
    assert rc == 0 and "8 prepared" in capsys.readouterr().out
    rc = main(["prepare", "cremad", "--source", str(cremad_raw), "--out", str(tmp_path / "c"), "--no-progress"])
    assert rc == 0 and "8 already done" in capsys.readouterr().out


def test_paper_model_forward_backward_with_ogmge(cremad_cache):
    from ogmge.models import build_paper_model
    from ogmge.modulation import OGMGE

    ds = load_paper_dataset("cremad", cremad_cache, split="train", val_fraction=0, image_size=32)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_samples)))
    assert batch["inputs"]["audio"].shape == (4, 1, 257, 188) and batch["inputs"]["visual"].shape == (4, 1, 3, 32, 32)
    model = build_paper_model(fusion="concat", num_classes=ds.num_classes, width=4)
    modulator = OGMGE(model.encoders, mode="OGM_GE", alpha=0.8)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(batch["inputs"], labels=batch["labels"])
    assert out.logits.shape == (4, 6) and set(out.modality_logits) == {"audio", "visual"}
    loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
    loss.backward()
    modulator.step(modality_logits=out.modality_logits, labels=batch["labels"], epoch=0)
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("encoders.audio") for n in changed)
    assert any(n.startswith("encoders.visual") for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_speaker_independent_split_end_to_end(cremad_cache):
    kw = dict(speaker_independent=True, test_fraction=0.25, seed=2)
    train = load_paper_dataset("cremad", cremad_cache, split="train", val_fraction=0, **kw)
    test = load_paper_dataset("cremad", cremad_cache, split="test", **kw)
    assert len(train) + len(test) == 8 and len(set(test.groups)) == 1
    assert not set(train.groups) & set(test.groups)
    with pytest.raises(ValueError, match="speaker_independent applies to 'cremad' only"):
        load_paper_dataset("ave", cremad_cache, split="train", speaker_independent=True)
    with pytest.raises(ValueError, match="split must be one of"):
        load_paper_dataset("cremad", cremad_cache, split="dev")
