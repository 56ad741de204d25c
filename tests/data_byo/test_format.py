"""Round trips of the bring-your-own format (.npz and directory + manifest)."""

import json

import numpy as np
import pytest
import torch

from ogmge.data.byo import infer_kind, load_byo, save_byo
from ogmge.data.collate import collate_samples


def _content(rng):
    n = 12
    return {
        "modalities": {
            "audio": rng.normal(size=(n, 1, 16, 20)).astype(np.float32),
            "mfcc": rng.normal(size=(n, 9, 5)).astype(np.float32),
            "feat": rng.normal(size=(n, 7)).astype(np.float64),
        },
        "labels": np.arange(n) % 3,
        "kinds": {"audio": "spectrogram", "mfcc": "sequence", "feat": "vector"},
        "lengths": {"mfcc": rng.integers(1, 10, n)},
        "split": np.array(["train"] * 8 + ["val"] * 2 + ["test"] * 2),
        "groups": np.array([f"spk{i // 3}" for i in range(n)]),
        "class_names": ["neu", "hap", "sad"],
    }


@pytest.mark.parametrize("target", ["data.npz", "data_dir"])
def test_round_trip_identical(tmp_path, target):
    c = _content(np.random.default_rng(0))
    path = save_byo(tmp_path / target, c["modalities"], c["labels"], kinds=c["kinds"], lengths=c["lengths"],
                    split=c["split"], groups=c["groups"], class_names=c["class_names"])
    ds = load_byo(path)
    for name, arr in c["modalities"].items():
        assert np.array_equal(ds.arrays[name].numpy(), arr.astype(np.float32))
        assert ds.modalities[name].kind == c["kinds"][name]
    assert np.array_equal(ds.lengths["mfcc"].numpy(), c["lengths"]["mfcc"])
    assert ds.targets == c["labels"].tolist()
    assert ds.splits == c["split"].tolist()
    assert ds.groups == c["groups"].tolist()
    assert ds.class_names == c["class_names"] and ds.num_classes == 3
    assert ds.modalities["mfcc"].shape == (None, 5)
    assert ds.modalities["audio"].shape == (1, 16, 20)
    # samples are trimmed to their length; a batch pads back to the longest
    s = ds[4]
    n4 = int(c["lengths"]["mfcc"][4])
    assert s["lengths"] == {"mfcc": n4}
    assert np.array_equal(s["inputs"]["mfcc"].numpy(), c["modalities"]["mfcc"][4, :n4])
    batch = collate_samples([ds[i] for i in range(5)])
    longest = int(c["lengths"]["mfcc"][:5].max())
    assert batch["inputs"]["mfcc"].shape == (5, longest, 5)
    assert batch["inputs"]["audio"].shape == (5, 1, 16, 20)
    assert torch.equal(batch["lengths"]["mfcc"], torch.as_tensor(c["lengths"]["mfcc"][:5]))
    assert torch.equal(batch["labels"], torch.arange(5) % 3)


def test_ragged_lists_padded_and_trimmed(tmp_path):
    rng = np.random.default_rng(1)
    clips = [rng.normal(size=(t, 3, 4, 4)).astype(np.float32) for t in (2, 5, 3)]
    waves = [rng.normal(size=(n,)).astype(np.float32) for n in (10, 7, 12)]
    ds = load_byo(save_byo(tmp_path / "r.npz", {"clip": clips, "wave": waves}, [0, 1, 0],
                           kinds={"clip": "video", "wave": "waveform"}))
    assert ds.arrays["clip"].shape == (3, 5, 3, 4, 4)
    assert ds.lengths["wave"].tolist() == [10, 7, 12]
    for i in range(3):
        assert np.array_equal(ds[i]["inputs"]["clip"].numpy(), clips[i])
        assert np.array_equal(ds[i]["inputs"]["wave"].numpy(), waves[i])
    batch = collate_samples([ds[0], ds[1]])
    assert batch["inputs"]["clip"].shape == (2, 5, 3, 4, 4)
    assert batch["inputs"]["wave"].shape == (2, 10)


def test_yaml_manifest_and_inferred_kinds(tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "x.npy", rng.normal(size=(4, 6)))
    np.save(tmp_path / "frames.npy", rng.normal(size=(4, 2, 3, 5, 5)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 1, 0]))
    (tmp_path / "manifest.yaml").write_text(
        "labels: y.npy\nmodalities:\n  x: x.npy\n  frames: {file: frames.npy}\ngroup: [a, a, b, b]\n"
    )
    ds = load_byo(tmp_path)
    assert {n: s.kind for n, s in ds.modalities.items()} == {"x": "vector", "frames": "video"}
    assert ds.groups == ["a", "a", "b", "b"] and ds.num_classes == 2
    assert load_byo(tmp_path, kinds={"x": "waveform"}).modalities["x"].kind == "waveform"


def test_plain_npz_without_meta(tmp_path):
    np.savez(tmp_path / "p.npz", labels=np.array([1, 0]), seq=np.zeros((2, 4, 3)), img=np.ones((2, 3, 4, 4)))
    ds = load_byo(tmp_path / "p.npz")
    assert ds.modalities["seq"].kind == "sequence" and ds.modalities["img"].kind == "image"
    assert ds.class_names == ["0", "1"]


def test_infer_kind_defaults():
    assert infer_kind((5,)) == "vector"
    assert infer_kind((5,), has_lengths=True) == "waveform"
    assert infer_kind((40, 26)) == "sequence"
    assert infer_kind((24, 30, 40)) == "image"
    assert infer_kind((2, 3, 8, 8)) == "video"
    with pytest.raises(ValueError, match="declare"):
        infer_kind((1, 2, 3, 4, 5))


def test_subset_of_modalities_and_split(tmp_path):
    c = _content(np.random.default_rng(3))
    path = save_byo(tmp_path / "d.npz", c["modalities"], c["labels"], kinds=c["kinds"], lengths=c["lengths"],
                    split=c["split"])
    ds = load_byo(path, modalities=["feat"], split="train")
    assert list(ds.modalities) == ["feat"] and len(ds) == 8
    assert set(ds[0]["inputs"]) == {"feat"} and "lengths" not in ds[0]
    with np.load(path) as z:
        assert json.loads(str(z["__meta__"]))["format"] == "ogmge-byo"
