"""The batched fetch (``PaperDataset.__getitems__``, what a DataLoader calls) gives the same
samples, bit for bit, as ``dataset[i]``, and its batches collate without a copy."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from ogmge.data.collate import BufferedSamples, batch_buffers, collate_samples
from ogmge.data.paper import load_paper_dataset
from ogmge.data.prepare import prepare_dataset
from support.paper_rawdata import make_cremad, make_kinetics


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    out = {}
    for name, make in (("cremad", lambda p: make_cremad(p, video=False, frames=True)),
                       ("kinetics_sounds", lambda p: make_kinetics(p, video=False))):
        raw = make(tmp_path_factory.mktemp(f"{name}_raw"))
        cache = tmp_path_factory.mktemp(f"{name}_cache")
        prepare_dataset(name, raw, cache, progress=False)
        out[name] = (raw, cache)
    return out


def same_batch(a: dict, b: dict) -> None:
    assert a["inputs"].keys() == b["inputs"].keys()
    for name in a["inputs"]:
        x, y = a["inputs"][name], b["inputs"][name]
        assert x.dtype == y.dtype and x.shape == y.shape and x.is_contiguous() and y.is_contiguous()
        assert torch.equal(x, y), name
    assert torch.equal(a["labels"], b["labels"]) and a["lengths"].keys() == b["lengths"].keys()


@pytest.mark.parametrize("name", ["cremad", "kinetics_sounds"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("visual_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("source", ["cache", "raw"])
def test_batched_fetch_is_bit_identical_to_per_item(caches, name, train, visual_dtype, source):
    root = caches[name][0 if source == "raw" else 1]
    ds = load_paper_dataset(name, root, split="train", val_fraction=0, image_size=24, train=train,
                            visual_dtype=visual_dtype, seed=5)
    n = len(ds)
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        for indices in ([2, 0, 1], list(range(n))[::-1], [1], [0, 0, n - 1]):
            per_item = [ds[i] for i in indices]
            batched = ds.__getitems__(indices)
            assert len(batched) == len(per_item)
            for p, b in zip(per_item, batched):
                assert p.keys() == b.keys() and p["label"] == b["label"]
                for m in p["inputs"]:
                    x, y = p["inputs"][m], b["inputs"][m]
                    assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), (m, indices)
            same_batch(collate_samples(per_item), collate_samples(batched))


def test_batched_fetch_collates_without_a_copy(caches):
    ds = load_paper_dataset("cremad", caches["cremad"][1], split="train", val_fraction=0, image_size=24)
    samples = ds.__getitems__([0, 1, 2])
    batch = collate_samples(samples)
    for m, x in batch["inputs"].items():
        assert x.data_ptr() == samples[0]["inputs"][m].data_ptr() and x.is_contiguous()
    # a different order or a subset is copied, with the same values
    reordered = collate_samples(samples[::-1])
    assert reordered["inputs"]["audio"].data_ptr() != batch["inputs"]["audio"].data_ptr()
    same_batch(reordered, collate_samples([ds[i] for i in (2, 1, 0)]))
    part = collate_samples(samples[:2])
    same_batch(part, collate_samples([ds[0], ds[1]]))
    # plain samples are never aliased by their batch
    one = ds[0]
    assert collate_samples([one])["inputs"]["audio"].data_ptr() != one["inputs"]["audio"].data_ptr()


def test_batch_buffers_rows_collate_to_the_buffers():
    bufs = batch_buffers(3, {"a": ((2,), torch.float32), "b": ((1, 4), torch.uint8)})
    bufs["a"].copy_(torch.arange(6.0).view(3, 2))
    bufs["b"].fill_(7)
    rows = [{"inputs": {"a": bufs["a"][k], "b": bufs["b"][k]}, "label": k} for k in range(3)]
    batch = collate_samples(BufferedSamples(rows, bufs))
    assert batch["inputs"]["a"] is bufs["a"] and batch["inputs"]["b"] is bufs["b"]
    assert batch["labels"].tolist() == [0, 1, 2]
    # the same rows in a plain list, or other tensors declared as the rows, are copied
    plain = collate_samples(list(rows))
    assert plain["inputs"]["a"] is not bufs["a"] and torch.equal(plain["inputs"]["a"], bufs["a"])
    others = [{"inputs": {"a": bufs["a"][k].clone(), "b": bufs["b"][k]}, "label": k} for k in range(3)]
    mixed = collate_samples(BufferedSamples(others, bufs))
    assert mixed["inputs"]["a"] is not bufs["a"] and mixed["inputs"]["b"] is bufs["b"]
    assert torch.equal(mixed["inputs"]["a"], bufs["a"])


@pytest.mark.parametrize("train", [True, False])
def test_dataloader_workers_give_the_in_process_batches(caches, train):
    ds = load_paper_dataset("kinetics_sounds", caches["kinetics_sounds"][1], split="train", val_fraction=0,
                            image_size=24, train=train)
    ds.set_epoch(2)
    kw = dict(batch_size=2, shuffle=False, collate_fn=collate_samples)
    here = [collate_samples([ds[i] for i in range(k, min(k + 2, len(ds)))]) for k in range(0, len(ds), 2)]
    there = list(DataLoader(ds, num_workers=2, **kw))
    assert len(here) == len(there)
    for a, b in zip(here, there):
        same_batch(a, b)


def test_split_views_forward_the_batched_fetch(caches, monkeypatch):
    """The training loop's train/val views use the dataset's batched fetch, with the same samples."""
    from ogmge.data.views import DatasetView

    ds = load_paper_dataset("cremad", caches["cremad"][1], split="train", val_fraction=0, image_size=24,
                            train=True, seed=5)
    view = DatasetView(ds, [3, 1, 2])
    calls = []
    original = type(ds).__getitems__
    monkeypatch.setattr(type(ds), "__getitems__", lambda self, idx: calls.append(list(idx)) or original(self, idx))
    batched = view.__getitems__([2, 0])
    assert calls == [[2, 3]]
    same_batch(collate_samples(batched), collate_samples([ds[2], ds[3]]))


def test_modality_views_forward_the_batched_fetch(caches):
    """A unimodal run's view fetches through the dataset's batched path and keeps only its modality."""
    from ogmge.data.views import ModalityView

    ds = load_paper_dataset("cremad", caches["cremad"][1], split="train", val_fraction=0, image_size=24,
                            train=True, seed=5)
    view = ModalityView(ds, ["audio"])
    batched = view.__getitems__([2, 0])
    assert [list(s["inputs"]) for s in batched] == [["audio"], ["audio"]]
    ordered = view.__getitems__([0, 1, 2])  # the buffers' rows in order: collated without a copy
    assert collate_samples(ordered)["inputs"]["audio"].data_ptr() == ordered[0]["inputs"]["audio"].data_ptr()
    for s, i in zip(batched, [2, 0]):
        assert torch.equal(s["inputs"]["audio"], ds[i]["inputs"]["audio"]) and s["label"] == ds[i]["label"]
