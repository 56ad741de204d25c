"""Clips cache -> splits -> DataLoader -> the paper model with OGM-GE; ``ogmge train/eval --dataset clips``."""

from __future__ import annotations

import csv

import pytest
import torch
from torch.utils.data import DataLoader

from ogmge import OGMGE
from ogmge.data.clips import prepare_clips
from ogmge.data.clips_dataset import load_clips, load_clips_splits
from ogmge.data.collate import collate_samples
from ogmge.data.paper.readers import select_frames
from support.clips_rawdata import GOOD, GROUPS, IDS, write_clip


def _write_csv(path, rows, header=("path", "label", "group")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def caches(clip_folder, tmp_path_factory):
    """The folder (no group), the CSV with groups, and a CSV with a split column, prepared."""
    root = tmp_path_factory.mktemp("clips_train_caches")
    out = {"folder": root / "folder", "group": root / "group", "split": root / "split"}
    prepare_clips(clip_folder, out["folder"], progress=False)
    prepare_clips(clip_folder / "list.csv", out["group"], progress=False)
    splits = {"cat/c1.mp4": "train", "cat/c2.flv": "train", "cat/sub/c3.mkv": "test", "dog/d1.mov": "train",
              "dog/d2.avi": "test", "owl/o1.mp4": "train", "owl/O2.MP4": "train"}
    (clip_folder / "bad.mp4").write_bytes(b"garbage" * 50)
    rows = [[r, r.split("/")[0], GROUPS[r], splits[r]] for r in GOOD] + [["bad.mp4", "owl", "s9", "train"]]
    _write_csv(clip_folder / "split.csv", rows, ("path", "label", "group", "split"))
    report = prepare_clips(clip_folder / "split.csv", out["split"], on_error="skip", progress=False)
    assert [(c, k) for c, k, _ in report.skipped] == [("bad", "undecodable")]
    return out


def test_stratified_splits_without_groups(caches):
    parts = load_clips_splits(caches["folder"], val_fraction=0.3, test_fraction=0.3, split_seed=0, image_size=16)
    sets = {s: set(ds.clips) for s, ds in parts.items()}
    assert sets["train"] | sets["val"] | sets["test"] == set(IDS.values())
    assert not sets["train"] & sets["val"] and not (sets["train"] | sets["val"]) & sets["test"]
    # 7 clips (3 cat, 2 dog, 2 owl), 30 %: round(2.1) = 2 held out, by largest remainder of the class
    # quotas 0.9 / 0.6 / 0.6 (ties to the smaller label): one cat, one dog
    assert sorted(parts["test"].targets) == [0, 1]
    assert parts["train"].class_names == ["cat", "dog", "owl"] and parts["train"].groups is None
    assert (parts["train"].train, parts["val"].train, parts["test"].train) == (True, False, False)
    again = load_clips_splits(caches["folder"], val_fraction=0.3, test_fraction=0.3, split_seed=0, seed=5)
    assert {s: ds.clips for s, ds in again.items()} == {s: ds.clips for s, ds in parts.items()}
    other = load_clips_splits(caches["folder"], val_fraction=0.3, test_fraction=0.3, split_seed=3)
    assert any(other[s].clips != parts[s].clips for s in parts)


def test_group_splits_are_speaker_independent(caches):
    parts = load_clips_splits(caches["group"], val_fraction=0.2, test_fraction=0.2, split_seed=1)
    groups = {s: set(ds.groups) for s, ds in parts.items()}
    assert groups["train"] and groups["val"] and groups["test"]
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sum(len(ds) for ds in parts.values()) == 7


def test_split_column_and_skipped_clips(caches):
    with pytest.warns(UserWarning, match="skipped 1 clip"):
        train = load_clips(caches["split"], split="train", val_fraction=0)
    assert sorted(train.clips) == ["cat__c1", "cat__c2", "dog__d1", "owl__O2", "owl__o1"]
    assert train.skipped[0][0] == "bad" and "undecodable" in train.skipped[0][1]
    test = load_clips(caches["split"], split="test")
    assert sorted(test.clips) == ["cat__sub__c3", "dog__d2"] and test.targets == [0, 1]
    with pytest.warns(UserWarning, match="skipped 1 clip"):  # no val rows: carved from train by group
        parts = load_clips_splits(caches["split"], val_fraction=0.4)
    assert parts["val"] is not None and not set(parts["val"].groups) & set(parts["train"].groups)
    assert sorted(parts["test"].clips) == ["cat__sub__c3", "dog__d2"]
    with pytest.raises(ValueError, match="the 'val' split is empty"):  # asked for, but no val row
        load_clips(caches["split"], split="val", val_fraction=0)


def test_not_a_cache_and_bad_options(clip_folder, caches, capsys, tmp_path):
    from ogmge.interfaces.cli import main

    with pytest.raises(FileNotFoundError, match="ogmge prepare clips --source"):
        load_clips(clip_folder, split="train")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['speaker_independent'\]"):
        load_clips_splits(caches["folder"], speaker_independent=True)
    with pytest.raises(ValueError, match="test_fraction must be a number in \\[0, 1\\), got 1.5"):
        load_clips(caches["folder"], split="train", test_fraction=1.5)
    assert main(["train", "--dataset", "clips", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r")]) == 2
    assert "dataset 'clips' needs data_root (--data-root CACHE" in capsys.readouterr().err


def test_training_frames_random_evaluation_frames_even(caches):
    ds = load_clips(caches["folder"], split="train", val_fraction=0, test_fraction=0, image_size=8,
                    num_frames=2, visual_dtype="float32")
    i = ds.clips.index("dog__d2")  # 5 cached frames of distinct grey levels
    n = 5
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        expect = select_frames(n, 2, train=True, generator=ds.generator_for(i))
        seen.add(tuple(expect))
        assert ds[i]["inputs"]["visual"].shape == (2, 3, 8, 8)
    assert len(seen) > 1
    ev = load_clips(caches["folder"], split="train", val_fraction=0, test_fraction=0, image_size=8,
                    num_frames=2, train=False)
    a, b = ev[i]["inputs"]["visual"], ev[i]["inputs"]["visual"]
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert select_frames(n, 2, train=False) == [1, 3]


def test_dataloader_to_paper_model_with_ogmge(caches):
    from ogmge.models import build_paper_model

    ds = load_clips(caches["folder"], split="train", val_fraction=0, test_fraction=0.3, image_size=32)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_samples, num_workers=1)))
    assert batch["inputs"]["audio"].shape == (4, 1, 257, 188)
    assert batch["inputs"]["visual"].shape == (4, 3, 3, 32, 32) and batch["inputs"]["visual"].dtype == torch.uint8
    model = build_paper_model(fusion="concat", num_classes=ds.num_classes, width=4)
    modulator = OGMGE(model.encoders, mode="OGM_GE", alpha=0.8)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(batch["inputs"], labels=batch["labels"])
    assert out.logits.shape == (4, 3) and set(out.modality_logits) == {"audio", "visual"}
    torch.nn.functional.cross_entropy(out.logits, batch["labels"]).backward()
    modulator.step(modality_logits=out.modality_logits, labels=batch["labels"], epoch=0)
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("encoders.audio") for n in changed)
    assert any(n.startswith("encoders.visual") for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_train_and_eval_on_clips(caches, tmp_path, capsys):
    from ogmge.interfaces.cli import main
    from ogmge.training import load_checkpoint, load_run

    run = tmp_path / "run"
    assert main(["train", "--dataset", "clips", "--data-root", str(caches["group"]), "--epochs", "1",
                 "--batch-size", "2", "--width", "4", "--val-fraction", "0.2", "--device", "cpu",
                 "--set", "dataset_options={image_size: 32, test_fraction: 0.2, split_seed: 1}",
                 "--no-progress", "--out", str(run)]) == 0
    r = load_run(run)
    ck = load_checkpoint(run / "best.pt")
    assert ck.checkpoint["model_spec"]["builder"] == "paper" and ck.class_names == ["cat", "dog", "owl"]
    test = load_clips_splits(caches["group"], val_fraction=0.2, test_fraction=0.2, split_seed=1)["test"]
    assert r.results["test"]["n"] == len(test)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run)]) == 0
    assert f"on test ({len(test)} samples)" in capsys.readouterr().out


def test_more_clips_than_a_batch_train_end_to_end(tmp_path):
    """Twelve 1 s clips of two speakers' groups through ``ogmge.training.train``."""
    from ogmge.training import TrainConfig, train

    rows = []
    for i in range(12):
        rel = f"c{i}.mp4"
        write_clip(tmp_path / "raw" / rel, seconds=1.0, fps=4, size=(32, 48), seed=i)
        rows.append([rel, "yes" if i % 2 else "no", f"g{i % 4}"])
    _write_csv(tmp_path / "raw" / "list.csv", rows)
    prepare_clips(tmp_path / "raw" / "list.csv", tmp_path / "cache", workers=2, progress=False)
    cfg = TrainConfig(dataset="clips", data_root=str(tmp_path / "cache"), epochs=2, batch_size=4, width=4,
                      val_fraction=0.25, dataset_options={"image_size": 32, "num_frames": 1}, device="cpu",
                      progress=False, out=str(tmp_path / "run"), lr=1e-2)
    train(cfg)
    from ogmge.training import load_run

    r = load_run(tmp_path / "run")
    assert r.config.dataset == "clips" and {t["epoch"] for t in r.trace()} == {0, 1}
    assert r.results["test"]["n"] == 3  # one of the four 3-clip groups (test_fraction 0.2 -> >= 2.4 clips)
