"""Each validation error of the loader is a ValueError naming the array."""

import dataclasses
import json

import numpy as np
import pytest

from ogmge.data.byo import ByoContent, load_byo, save_byo, validate_byo


def _write(path, meta=None, **arrays):
    if meta is not None:
        arrays["__meta__"] = np.asarray(json.dumps(meta))
    np.savez(path, **arrays)
    return path


def _ok(n=4):
    return {"labels": np.arange(n) % 2, "img": np.zeros((n, 3, 4, 4), np.float32)}


def test_missing_labels(tmp_path):
    arrays = _ok()
    del arrays["labels"]
    with pytest.raises(ValueError, match="'labels' is missing"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


def test_mismatched_sample_counts(tmp_path):
    arrays = _ok()
    arrays["wave"] = np.zeros((5, 100), np.float32)
    with pytest.raises(ValueError, match=r"'wave' has 5 samples but 'labels' has 4"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(tmp_path, bad):
    arrays = _ok()
    arrays["img"][2, 1, 0, 0] = bad
    with pytest.raises(ValueError, match=r"'img' contains NaN or inf \(first in sample 2\)"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="'img': unknown kind 'picture'"):
        load_byo(_write(tmp_path / "a.npz", meta={"kinds": {"img": "picture"}}, **_ok()))


def test_shape_disagrees_with_declared_kind(tmp_path):
    with pytest.raises(ValueError, match=r"'img': declared kind 'sequence' needs a per-sample rank in \(2,\)"):
        load_byo(_write(tmp_path / "a.npz", meta={"kinds": {"img": "sequence"}}, **_ok()))
    with pytest.raises(ValueError, match=r"'img': kind 'spectrogram' needs per-sample shape \(1, F, T\)"):
        load_byo(_write(tmp_path / "b.npz", **_ok()), kinds={"img": "spectrogram"})


def test_lengths_out_of_range(tmp_path):
    arrays = _ok()
    arrays["seq"] = np.zeros((4, 6, 2), np.float32)
    arrays["seq.lengths"] = np.array([1, 6, 7, 3])
    with pytest.raises(ValueError, match=r"'seq.lengths' holds lengths in \[1, 7\], outside \[1, 6\]"):
        load_byo(_write(tmp_path / "a.npz", **arrays))
    arrays["seq.lengths"] = np.array([0, 6, 2, 3])
    with pytest.raises(ValueError, match=r"'seq.lengths' holds lengths in \[0, 6\]"):
        load_byo(_write(tmp_path / "b.npz", **arrays))


def test_lengths_on_fixed_size_kind(tmp_path):
    arrays = _ok()
    arrays["img.lengths"] = np.array([1, 2, 3, 3])
    with pytest.raises(ValueError, match="'img': kind 'image' is fixed-size"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


def test_unknown_split_value(tmp_path):
    arrays = _ok()
    arrays["split"] = np.array(["train", "dev", "test", "train"])
    with pytest.raises(ValueError, match=r"'split' holds unknown values \['dev'\]"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


def test_group_column_length(tmp_path):
    arrays = _ok()
    arrays["group"] = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="'group' must be 1-D with one entry per sample"):
        load_byo(_write(tmp_path / "a.npz", **arrays))


def test_labels_not_integers_or_beyond_class_names(tmp_path):
    arrays = _ok()
    arrays["labels"] = arrays["labels"].astype(np.float32)
    with pytest.raises(ValueError, match="'labels' must hold integers"):
        load_byo(_write(tmp_path / "a.npz", **arrays))
    with pytest.raises(ValueError, match="'labels' holds label 1 but only 1 class_names"):
        load_byo(_write(tmp_path / "b.npz", meta={"class_names": ["x"]}, **_ok()))


def test_non_numeric_modality_and_bad_name(tmp_path):
    arrays = _ok()
    arrays["text"] = np.array([["a"], ["b"], ["c"], ["d"]])
    with pytest.raises(ValueError, match="'text' must be numeric"):
        load_byo(_write(tmp_path / "a.npz", **arrays))
    with pytest.raises(ValueError, match="'img.x': a modality name must match"):
        save_byo(tmp_path / "b.npz", {"img.x": np.zeros((2, 3))}, [0, 1])


def test_declared_but_missing_array(tmp_path):
    with pytest.raises(ValueError, match="'audio' is declared"):
        load_byo(_write(tmp_path / "a.npz", meta={"kinds": {"audio": "spectrogram"}}, **_ok()))


def test_manifest_names_missing_file(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"labels": "y.npy", "modalities": {"img": "img.npy"}}))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match="'img': file .* does not exist"):
        load_byo(tmp_path)


def test_writer_validates_too(tmp_path):
    with pytest.raises(ValueError, match="'img' has 3 samples but 'labels' has 2"):
        save_byo(tmp_path / "a.npz", {"img": np.zeros((3, 3, 4, 4))}, [0, 1])
    assert not (tmp_path / "a.npz").exists()


def test_validate_byo_returns_the_content_normalised_and_frozen():
    labels = np.array([0, 2, 1], dtype=np.int32)
    content = validate_byo({"img": np.zeros((3, 3, 4, 4), np.float64), "wave": np.ones((3, 10), np.float32)},
                           labels, lengths={"wave": np.array([10, 4, 7], np.int32)}, split=["train", "val", "test"])
    assert isinstance(content, ByoContent)
    assert content.kinds == {"img": "image", "wave": "waveform"}  # inferred by rank and lengths
    assert content.labels.dtype == np.int64 and content.labels.tolist() == [0, 2, 1]
    assert content.lengths["wave"].dtype == np.int64 and content.lengths["wave"].tolist() == [10, 4, 7]
    assert content.split is not None and content.split.tolist() == ["train", "val", "test"]
    assert content.groups is None and content.class_names is None and sorted(content.arrays) == ["img", "wave"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        content.labels = labels  # type: ignore[misc]
