"""Bad clips (skipped and listed, or an error naming the file), resume after a kill, no PyAV, CLI."""

from __future__ import annotations

import builtins
import filecmp
import json
import os

import pytest

import ogmge.data.prepare as prep
from ogmge.data.clips import ClipSettings, prepare_clips, read_clip_csv
from ogmge.data.errors import DataError
from ogmge.interfaces.cli import main
from support.clips_rawdata import write_clip


def _cut(path, keep=0.5):
    b = path.read_bytes()
    path.write_bytes(b[: int(len(b) * keep)])
    return path


#: file -> (how it is made, the kind it is skipped as)
BAD = {
    "b/no_audio.mp4": (lambda p: write_clip(p, audio=False), "no_audio"),
    "b/no_video.mp4": (lambda p: write_clip(p, video=False), "no_video"),
    "b/corrupt.mp4": (lambda p: p.write_bytes(b"not a media file " * 40), "undecodable"),
    "b/half.mp4": (lambda p: _cut(write_clip(p, seconds=2)), "undecodable"),  # the index is lost
    "b/cut.mkv": (lambda p: _cut(write_clip(p, seconds=3)), "truncated"),
    "b/empty.mov": (lambda p: p.write_bytes(b""), "empty"),
    "b/short.mp4": (lambda p: write_clip(p, seconds=0.2), "too_short"),
}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips_bad")
    write_clip(root / "a" / "good1.mp4", seed=1)
    write_clip(root / "b" / "good2.mp4", seed=2)
    for rel, (make, _) in BAD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make(root / rel)
    return root


def test_each_bad_clip_is_skipped_and_listed(bad_folder, tmp_path, capsys):
    report = prepare_clips(bad_folder, tmp_path / "c", on_error="skip", progress=False)
    assert (report.listed, report.prepared) == (9, 2)
    got = {clip: kind for clip, kind, _ in report.skipped}
    want = {"b__" + rel[2:].rsplit(".", 1)[0]: kind for rel, (_, kind) in BAD.items()}
    assert got == want
    for _, _, reason in report.skipped:  # the reason names the file
        assert str(bad_folder / "b") in reason
    lines = (tmp_path / "c" / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[:2] for line in lines) == sorted([c, k] for c, k in want.items())
    saved = json.loads((tmp_path / "c" / "prepare_report.json").read_text())
    assert saved["skipped_count"] == 7 and saved["class_names"] == ["a", "b"]
    assert sorted(os.listdir(tmp_path / "c" / "clips")) == ["a__good1", "b__good2"]
    # the CLI lists every skipped clip and why
    assert main(["prepare", "clips", "--source", str(bad_folder), "--out", str(tmp_path / "d"),
                 "--on-error", "skip", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 prepared" in out and "7 skipped" in out
    for clip, kind in want.items():
        assert f"{clip}  [{kind}]" in out


@pytest.mark.parametrize("rel", sorted(BAD))
def test_each_bad_clip_raises_naming_the_file(bad_folder, tmp_path, rel):
    csv = tmp_path / "one.csv"
    csv.write_text(f"path,label\n{bad_folder / 'a' / 'good1.mp4'},x\n{bad_folder / rel},y\n")
    with pytest.raises(DataError, match=str(bad_folder / rel)) as err:
        prepare_clips(csv, tmp_path / "c", progress=False)
    assert err.value.kind == BAD[rel][1]


def test_missing_file_in_csv(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\nnowhere/x.mp4,a\n")
    with pytest.raises(DataError, match="nowhere/x.mp4") as err:
        prepare_clips(tmp_path / "list.csv", tmp_path / "c", progress=False)
    assert err.value.kind == "missing"


@pytest.mark.parametrize("text,match", [
    ("clip,label\na.mp4,x\n", "must name the columns 'path' and 'label'"),
    ("path,label,speaker\na.mp4,x,s\n", r"unknown: \['speaker'\]"),
    ("path,label\na.mp4\n", r"list.csv:2: expected 2 fields"),
    ("path,label\na.mp4,\n", r"list.csv:2: empty 'label'"),
    ("path,label,split\na.mp4,x,dev\n", r"list.csv:2: split must be one of"),
    ("path,label\na.mp4,x\n\n./a.mp4,y\n", r"list.csv:4: './a.mp4' is listed twice \(also on line 2\)"),
    ("path,label\na.mp4,x\na.mkv,y\n", "give the same clip id 'a'"),
    ("path,label\n", "no clip listed"),
])
def test_bad_csv_names_file_and_line(tmp_path, text, match):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_clip_csv(tmp_path / "list.csv")


def test_resume_after_kill_matches_uninterrupted(clip_folder, tmp_path, monkeypatch):
    full = tmp_path / "full"
    prepare_clips(clip_folder, full, progress=False)
    out = tmp_path / "resumed"
    real_save, calls = prep._save_array, []

    def dying_save(path, array):
        calls.append(path)
        real_save(path, array)
        if len(calls) == 7:  # clip 4: audio.npy written, frames.npy not -> killed mid-clip
            raise KeyboardInterrupt

    monkeypatch.setattr(prep, "_save_array", dying_save)
    with pytest.raises(KeyboardInterrupt):
        prepare_clips(clip_folder, out, progress=False)
    monkeypatch.setattr(prep, "_save_array", real_save)
    names = os.listdir(out / "clips")
    assert len([n for n in names if not n.startswith(".tmp-")]) == 3 and any(n.startswith(".tmp-") for n in names)
    report = prepare_clips(clip_folder, out, workers=2, progress=False)
    assert (report.already_done, report.prepared, report.skipped) == (3, 4, [])
    assert sorted(os.listdir(out / "clips")) == sorted(os.listdir(full / "clips"))  # stale tmp removed
    for clip in os.listdir(full / "clips"):
        for f in ("audio.npy", "frames.npy"):
            assert filecmp.cmp(out / "clips" / clip / f, full / "clips" / clip / f, shallow=False)
    for f in ("manifest.json", "skipped.txt", "splits/clips.csv"):
        assert filecmp.cmp(out / f, full / f, shallow=False)
    # resuming with other settings is refused, naming them
    with pytest.raises(ValueError, match=r"fps=1.0 \(now 2.0\)"):
        prepare_clips(clip_folder, out, settings=ClipSettings(fps=2.0), progress=False)


def test_cli_prepare_clips_options_and_resume(clip_folder, tmp_path, capsys):
    out = tmp_path / "c"
    args = ["prepare", "clips", "--source", str(clip_folder / "list.csv"), "--out", str(out), "--no-progress",
            "--fps", "2", "--max-frames", "3", "--sample-rate", "16000", "--seconds", "2", "--n-fft", "256",
            "--hop-length", "128", "--min-seconds", "0.25", "--workers", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "7 prepared" in text and "classes: cat, dog, owl" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["audio_shape"] == [1, 129, 251]
    assert manifest["settings"] == {"fps": 2.0, "max_frames": 3, "sample_rate": 16000, "seconds": 2.0,
                                    "n_fft": 256, "hop_length": 128, "min_seconds": 0.25}
    assert main(args) == 0 and "7 already done" in capsys.readouterr().out
    assert main(["prepare", "cremad", "--source", str(clip_folder), "--out", str(tmp_path / "x"), "--fps", "2"]) == 2
    assert "--fps apply to 'prepare clips' only" in capsys.readouterr().err
    assert main(["prepare", "clips", "--source", str(clip_folder), "--out", str(tmp_path / "y"), "--fps", "0"]) == 2
    assert "fps must be a positive number, got 0.0" in capsys.readouterr().err


def test_without_pyav_the_error_names_the_extra(clip_folder, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(ImportError, match=r'pip install "ogmge\[video\]"'):
        prepare_clips(clip_folder, tmp_path / "c", progress=False)
    assert main(["prepare", "clips", "--source", str(clip_folder), "--out", str(tmp_path / "c")]) == 2
    assert 'pip install "ogmge[video]"' in capsys.readouterr().err
