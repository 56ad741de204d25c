"""Real-format clips (webm VP8/VP9 + Opus, mp4 H.264 + AAC/MP3, no audio, empty, a dash-leading
name) where the one clip that the old rule put in validation cannot be decoded: ``prepare clips
--on-error skip`` then ``train`` trains, because the splits are carved over the prepared clips."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ogmge.data.clips import clip_id, list_folder
from ogmge.data.clips_dataset import load_clips_splits
from ogmge.data.splitting import stratified_split
from ogmge.interfaces.cli import main
from ogmge.training import load_run
from support.clips_rawdata import write_coded_clip

#: relative path -> (video codec, audio codec or None): four per class, two of them bad.
CLIPS = {
    "cat/a1.webm": ("libvpx", "libopus"), "cat/a2.webm": ("libvpx-vp9", "libopus"),
    "cat/a3.mp4": ("libx264", "aac"), "cat/a4.mp4": ("libx264", "libmp3lame"),
    "dog/-b1.mp4": ("libx264", "aac"), "dog/b2.webm": ("libvpx", "libopus"),
    "dog/b3.mp4": ("libx264", "libmp3lame"), "dog/b4.webm": ("libvpx-vp9", "libopus"),
    "owl/c1.mp4": ("libx264", "aac"), "owl/c2.webm": ("libvpx", "libopus"),
    "owl/c3.mp4": ("libx264", "aac"), "owl/c4.webm": ("libvpx-vp9", "libopus"),
    "owl/silent.mp4": ("libx264", None),
}
TRAIN = ("--epochs", "1", "--batch-size", "4", "--width", "4", "--device", "cpu", "--no-progress",
         "--set", "dataset_options={image_size: 32, num_frames: 1}")


def _old_rule_val(root) -> str:
    """The validation clip of the rule that carved over every listed clip (test 20 %, then 10 %)."""
    listing = list_folder(root)
    labels = [listing.class_names.index(e.label) for e in listing.entries]
    rest, _ = stratified_split(labels, val_fraction=0.2, seed=0)
    _, val = stratified_split([labels[i] for i in rest], val_fraction=0.1, seed=0)
    assert len(val) == 1
    return listing.entries[rest[val[0]]].path


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """The clips above, an empty file, and the old rule's validation clip replaced by garbage."""
    root = tmp_path_factory.mktemp("real_clips") / "raw"
    for i, (rel, (vcodec, acodec)) in enumerate(CLIPS.items()):
        rate = 44100 if acodec in ("aac", "libmp3lame") else 48000
        write_coded_clip(root / rel, vcodec, acodec, rate=rate, seed=i)
    (root / "dog" / "empty.mp4").write_bytes(b"")
    val = _old_rule_val(root)
    assert os.path.getsize(val) > 0 and "silent" not in val  # a real clip
    with open(val, "r+b") as f:  # keep the header's first bytes, break everything after them
        f.seek(64)
        f.write(b"\x00garbage" * 200)
        f.truncate()
    return root, val


def test_real_clips_train_when_the_listed_validation_clip_is_undecodable(real_folder, tmp_path, capsys):
    root, bad = real_folder
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", "clips", "--source", str(root), "--out", str(cache), "--on-error", "skip",
                 "--no-progress"]) == 0
    skipped = {line.split("\t")[1] for line in (cache / "skipped.txt").read_text().splitlines()}
    assert skipped == {"undecodable", "no_audio", "empty"}
    capsys.readouterr()
    assert main(["train", "--dataset", "clips", "--data-root", str(cache), *TRAIN, "--out", str(run)]) == 0, \
        capsys.readouterr().err
    parts = load_clips_splits(cache, image_size=32)
    prepared = 14 - 3
    # carved over the 11 prepared clips: floor(0.2 * 11 + 1/2) = 2 test, floor(0.1 * 9 + 1/2) = 1 val
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (prepared - 3, 1, 2)
    assert {c for c, _ in parts["train"].skipped} == {"owl__silent", "dog__empty", clip_id(os.path.relpath(bad, root))}
    results = load_run(run).results
    assert results["test"]["n"] == 2
    assert torch.isfinite(torch.tensor(results["test"]["acc"]))


def test_a_split_too_small_says_which_fraction_to_raise(real_folder, tmp_path, capsys):
    root, _ = real_folder
    src = tmp_path / "few"
    for cls in ("cat", "dog"):  # two clips per class: 4 prepared
        for rel in [r for r in CLIPS if r.startswith(cls)][:2]:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((root / rel).read_bytes())
    cache = tmp_path / "cache"
    assert main(["prepare", "clips", "--source", str(src), "--out", str(cache), "--no-progress"]) == 0
    capsys.readouterr()
    # test: floor(0.2 * 4 + 1/2) = 1 clip; val: floor(0.1 * 3 + 1/2) = 0 -> refused, fraction >= 1/(2*3)
    assert main(["train", "--dataset", "clips", "--data-root", str(cache), *TRAIN, "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "the val split is empty" in err and "--val-fraction" in err and "at least 0.17" in err
    assert "add clips" in err and "split column" not in err
    assert main(["train", "--dataset", "clips", "--data-root", str(cache), *TRAIN, "--val-fraction", "0.34",
                 "--out", str(tmp_path / "run")]) == 0


def test_a_cache_of_the_old_rule_keeps_its_splits_and_says_how_to_move(real_folder, tmp_path, capsys):
    root, bad = real_folder
    cache = tmp_path / "cache"
    assert main(["prepare", "clips", "--source", str(root), "--out", str(cache), "--on-error", "skip",
                 "--no-progress"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest.pop("split_over") == "prepared"
    (cache / "manifest.json").write_text(json.dumps(manifest))  # as an earlier ogmge wrote it
    with pytest.raises(ValueError, match="prepared by an earlier ogmge.*re-run ogmge prepare clips"):
        load_clips_splits(cache)
    # with val_fraction 0 the old splits still load, and a run on them resumes only after it says why
    run = tmp_path / "run"
    assert main(["train", "--dataset", "clips", "--data-root", str(cache), *TRAIN, "--val-fraction", "0",
                 "--out", str(run)]) == 0
    assert main(["prepare", "clips", "--source", str(root), "--out", str(cache), "--on-error", "skip",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the data differ" in err and "carves the splits over the clips that were prepared" in err
