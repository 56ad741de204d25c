"""Every kind of bad input: a clear error naming the file by default; skipped, counted and
listed with on_error="skip". Never a silent drop."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ogmge.data.errors import DataError
from ogmge.data.paper import load_paper_dataset
from ogmge.data.prepare import prepare_dataset
from support.paper_rawdata import make_cremad, make_kinetics, write_wav

BAD = "1002_DFA_SAD_XX"  # a train clip of the tiny CREMA-D


def _truncate(path, keep=0.5):
    b = path.read_bytes()
    path.write_bytes(b[: int(len(b) * keep)])


def _garbage(path):
    path.write_bytes(b"this is not a media file " * 40)


def _float_wav_with(value):
    def spoil(path):
        x = np.full(16000, 0.1, np.float32)
        x[100] = value
        sf.write(path, x, 16000, subtype="FLOAT")
    return spoil


CASES = {
    "missing": (lambda p: p.unlink(), "missing", f"AudioWAV/{BAD}.wav"),
    "empty": (lambda p: p.write_bytes(b""), "empty", f"AudioWAV/{BAD}.wav"),
    "truncated": (_truncate, "truncated", f"AudioWAV/{BAD}.wav"),
    "undecodable": (_garbage, "undecodable", f"AudioWAV/{BAD}.wav"),
    "sample_rate": (lambda p: write_wav(p, rate=8000), "sample_rate", f"AudioWAV/{BAD}.wav"),
    "shape": (lambda p: sf.write(p, np.zeros((16000, 3), np.float32), 16000), "shape", f"AudioWAV/{BAD}.wav"),
    "nan": (_float_wav_with(np.nan), "non_finite", f"AudioWAV/{BAD}.wav"),
    "inf": (_float_wav_with(np.inf), "non_finite", f"AudioWAV/{BAD}.wav"),
}


@pytest.fixture
def cremad(tmp_path):
    return make_cremad(tmp_path / "raw", video=False, frames=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_audio_file_raise_then_skip(cremad, tmp_path, case):
    spoil, kind, named = CASES[case]
    spoil(cremad / "AudioWAV" / f"{BAD}.wav")
    with pytest.raises(DataError, match=named) as err:
        prepare_dataset("cremad", cremad, tmp_path / "c1", progress=False)
    assert err.value.kind == kind
    report = prepare_dataset("cremad", cremad, tmp_path / "c2", on_error="skip", progress=False)
    assert (report.listed, report.prepared, len(report.skipped)) == (8, 7, 1)
    assert report.skipped[0][:2] == (BAD, kind)
    listed = (tmp_path / "c2" / "skipped.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{BAD}\t{kind}\t") and named in listed[0]
    # the reader of the cache does not drop the skipped clip silently either
    with pytest.raises(DataError, match=BAD):
        load_paper_dataset("cremad", tmp_path / "c2", split="train", val_fraction=0)
    with pytest.warns(UserWarning, match="skipped 1 clip"):
        ds = load_paper_dataset("cremad", tmp_path / "c2", split="train", val_fraction=0, on_error="skip")
    assert len(ds) == 5 and BAD not in ds.clips and ds.skipped[0][0] == BAD


def test_label_outside_class_map(cremad, tmp_path):
    text = (cremad / "train.csv").read_bytes().replace(b"1002_DFA_SAD_XX,SAD", b"1002_DFA_SAD_XX,XXX")
    (cremad / "train.csv").write_bytes(text)
    with pytest.raises(DataError, match=r"train.csv:\d+ \(1002_DFA_SAD_XX\).*'XXX'"):
        prepare_dataset("cremad", cremad, tmp_path / "c1", progress=False)
    with pytest.raises(DataError, match="XXX"):
        load_paper_dataset("cremad", cremad, split="train")
    report = prepare_dataset("cremad", cremad, tmp_path / "c2", on_error="skip", progress=False)
    assert (report.listed, report.prepared, len(report.skipped)) == (8, 7, 1)
    assert report.skipped[0][1] == "label" and "XXX" in (tmp_path / "c2" / "skipped.txt").read_text()
    with pytest.warns(UserWarning):
        ds = load_paper_dataset("cremad", cremad, split="train", val_fraction=0, on_error="skip")
    assert len(ds) == 5 and "XXX" in ds.skipped[0][1]


def test_missing_frames_in_raw_layout(cremad):
    import shutil

    shutil.rmtree(cremad / "Image-01-FPS" / BAD)
    with pytest.raises(DataError, match=f"Image-01-FPS/{BAD}"):
        load_paper_dataset("cremad", cremad, split="train")
    with pytest.warns(UserWarning):
        ds = load_paper_dataset("cremad", cremad, split="train", val_fraction=0, on_error="skip")
    assert BAD not in ds.clips and len(ds) == 5


def test_bad_frames_empty_and_undecodable(cremad, tmp_path):
    for f in (cremad / "Image-01-FPS" / BAD).iterdir():
        f.unlink()
    with pytest.raises(DataError, match="holds no image") as err:
        prepare_dataset("cremad", cremad, tmp_path / "c1", progress=False)
    assert err.value.kind == "empty"
    _garbage(cremad / "Image-01-FPS" / BAD / "000001.jpg")
    with pytest.raises(DataError, match="000001.jpg") as err:
        prepare_dataset("cremad", cremad, tmp_path / "c2", progress=False)
    assert err.value.kind == "undecodable"


@pytest.mark.parametrize("spoil,kind", [(_truncate, "truncated"), (_garbage, "undecodable"),
                                        (lambda p: p.write_bytes(b""), "empty")])
def test_bad_video(tmp_path, spoil, kind):
    root = make_kinetics(tmp_path / "ks")
    bad = root / "video" / "xYz_9.mp4"
    spoil(bad)
    with pytest.raises(DataError, match="xYz_9.mp4") as err:
        prepare_dataset("kinetics_sounds", root, tmp_path / "c1", progress=False)
    assert err.value.kind == kind
    report = prepare_dataset("kinetics_sounds", root, tmp_path / "c2", on_error="skip", workers=2, progress=False)
    assert report.prepared == 3 and [s[:2] for s in report.skipped] == [("xYz_9", kind)]


def test_cached_array_of_wrong_shape_or_nan(tmp_path):
    root = make_cremad(tmp_path / "raw", video=False, frames=True)
    cache = tmp_path / "cache"
    prepare_dataset("cremad", root, cache, progress=False)
    audio = cache / "clips" / BAD / "audio.npy"
    np.save(audio, np.zeros((1, 257, 100), np.float32))
    with pytest.raises(DataError, match=f"{BAD}/audio.npy.*257, 100") as err:
        load_paper_dataset("cremad", cache, split="train", val_fraction=0)
    assert err.value.kind == "shape"
    bad = np.zeros((1, 257, 188), np.float32)
    bad[0, 3, 4] = np.nan
    np.save(audio, bad)
    ds = load_paper_dataset("cremad", cache, split="train", val_fraction=0)
    with pytest.raises(DataError, match=f"{BAD}/audio.npy") as err:
        ds[ds.clips.index(BAD)]
    assert err.value.kind == "non_finite"
