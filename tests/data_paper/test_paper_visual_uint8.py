"""uint8 visual frames from the paper datasets, and batches collated in DataLoader workers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ogmge.data.collate import collate_samples
from ogmge.data.paper import load_paper_dataset
from ogmge.data.prepare import prepare_dataset
from ogmge.data.transforms import eval_transform, frames_to_tensor, normalize, train_transform
from ogmge.models import VisualEncoder
from support.paper_rawdata import make_cremad, make_kinetics


@pytest.fixture(scope="module")
def ks(tmp_path_factory):
    raw = make_kinetics(tmp_path_factory.mktemp("ks_raw"), video=False)
    cache = tmp_path_factory.mktemp("ks_cache")
    prepare_dataset("kinetics_sounds", raw, cache, progress=False)
    return raw, cache


@pytest.mark.parametrize("train", [True, False])
def test_cache_emits_uint8_frames_that_normalise_to_the_float_ones(ks, train):
    raw, cache = ks
    kw = dict(split="train", val_fraction=0, image_size=24, train=train)
    u8 = load_paper_dataset("kinetics_sounds", cache, **kw)  # default from a cache: uint8
    f32 = load_paper_dataset("kinetics_sounds", cache, visual_dtype="float32", **kw)
    assert u8.visual_dtype == "uint8" and f32.visual_dtype == "float32"
    assert u8.modalities == f32.modalities
    enc = VisualEncoder(width=2)
    for epoch in (0, 1):
        u8.set_epoch(epoch)
        f32.set_epoch(epoch)
        for i in range(len(u8)):
            a, b = u8[i], f32[i]
            v = a["inputs"]["visual"]
            assert v.dtype == torch.uint8 and v.shape == (3, 3, 24, 24) and v.is_contiguous()
            assert b["inputs"]["visual"].dtype == torch.float32
            assert torch.equal(normalize(v), b["inputs"]["visual"])  # the dataset's own normalisation
            torch.testing.assert_close(enc.normalize(v), b["inputs"]["visual"], atol=1e-6, rtol=0)
            assert torch.equal(a["inputs"]["audio"], b["inputs"]["audio"]) and a["label"] == b["label"]


def test_raw_layout_defaults_to_float32_and_can_emit_uint8(ks):
    raw, _ = ks
    kw = dict(split="train", val_fraction=0, image_size=16)
    f32 = load_paper_dataset("kinetics_sounds", raw, **kw)
    u8 = load_paper_dataset("kinetics_sounds", raw, visual_dtype="uint8", **kw)
    assert f32.visual_dtype == "float32" and f32[0]["inputs"]["visual"].dtype == torch.float32
    v = u8[0]["inputs"]["visual"]
    assert v.dtype == torch.uint8 and v.shape == (3, 3, 16, 16)
    assert torch.equal(normalize(v), f32[0]["inputs"]["visual"])


@pytest.mark.parametrize("bad", ["float16", "int", torch.uint8, ""])
def test_visual_dtype_is_checked(ks, bad):
    with pytest.raises(ValueError, match="visual_dtype"):
        load_paper_dataset("kinetics_sounds", ks[1], split="train", val_fraction=0, visual_dtype=bad)


def test_transforms_without_normalisation_keep_uint8():
    frames = frames_to_tensor(torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8).numpy())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    raw = train_transform(frames, 20, generator=g1, normalize=False)
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 20, 20) and raw.is_contiguous()
    assert torch.equal(normalize(raw), train_transform(frames, 20, generator=g2))
    ev = eval_transform(frames, 20, normalize=False)
    assert ev.dtype == torch.uint8 and ev.is_contiguous()
    assert torch.equal(normalize(ev), eval_transform(frames, 20))


def test_cremad_cache_through_two_workers_matches_in_process(tmp_path):
    raw = make_cremad(tmp_path / "raw", video=False, frames=True)
    prepare_dataset("cremad", raw, tmp_path / "cache", progress=False)
    ds = load_paper_dataset("cremad", tmp_path / "cache", split="train", val_fraction=0, image_size=32)
    kw = dict(batch_size=3, shuffle=False, collate_fn=collate_samples)
    here = list(DataLoader(ds, **kw))
    there = list(DataLoader(ds, num_workers=2, **kw))
    assert len(here) == len(there) == 2
    for a, b in zip(here, there):
        assert a["inputs"]["visual"].dtype == b["inputs"]["visual"].dtype == torch.uint8
        assert a["inputs"]["visual"].shape == (3, 1, 3, 32, 32)
        for name in ("audio", "visual"):
            assert torch.equal(a["inputs"][name], b["inputs"][name])
        assert torch.equal(a["labels"], b["labels"]) and a["lengths"] == b["lengths"] == {}


# --------------------------------------------------------------------------- collate in workers


class Mixed(Dataset):
    """Fixed uint8 frames, float vectors and variable-length float sequences."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {
            "inputs": {
                "frames": torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8, generator=g),
                "vec": torch.randn(6, generator=g),
                "seq": torch.randn(1 + i % 4, 3, generator=g),
            },
            "label": i % 3,
            "lengths": {"seq": 1 + i % 4},
            "index": i,
        }


def collate_and_report(samples):
    """collate_samples plus, per input, whether it was built in shared memory (in a worker)."""
    batch = collate_samples(samples)
    batch["shared"] = {n: (get_worker_info() is not None, t.is_shared()) for n, t in batch["inputs"].items()}
    return batch


def test_collate_in_two_workers_gives_the_in_process_batch():
    kw = dict(batch_size=4, shuffle=False, collate_fn=collate_and_report)
    here = list(DataLoader(Mixed(), **kw))
    there = list(DataLoader(Mixed(), num_workers=2, **kw))
    assert len(here) == len(there) == 3
    for a, b in zip(here, there):
        assert a["inputs"].keys() == b["inputs"].keys()
        for name in a["inputs"]:
            x, y = a["inputs"][name], b["inputs"][name]
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
            assert y.is_contiguous()
            assert a["shared"][name] == (False, False)   # in-process: ordinary tensors
            assert b["shared"][name] == (True, True)     # in a worker: built in shared memory
        assert torch.equal(a["lengths"]["seq"], b["lengths"]["seq"])
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["index"], b["index"])
    # padding is zero in both
    seq = there[0]["inputs"]["seq"]
    assert seq.shape == (4, 4, 3) and torch.all(seq[0, 1:] == 0)


def test_collate_in_process_is_unchanged():
    samples = [Mixed()[i] for i in range(4)]
    batch = collate_samples(samples)
    assert torch.equal(batch["inputs"]["vec"], torch.stack([s["inputs"]["vec"] for s in samples]))
    assert not any(t.is_shared() for t in batch["inputs"].values())
    with pytest.raises(ValueError, match="empty"):
        collate_samples([])
