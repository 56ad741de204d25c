"""The two readers of a paper dataset -- a ``prepare`` cache and the extracted layout it was
prepared from -- give the same samples, bit for bit, and these are the paper's transforms."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ogmge.data.collate import collate_samples
from ogmge.data.paper import load_paper_dataset, select_frames
from ogmge.data.paper.dataset import sample_seed
from ogmge.data.prepare import prepare_dataset
from ogmge.data.transforms import eval_transform, train_transform
from ogmge.data.video import list_frame_files, read_image
from support.paper_rawdata import make_cremad, make_vggsound, write_frames

# frames whose shorter side is already the cache's 256: prepare stores them unchanged
FRAME_SIZE = (256, 264)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    out = {}
    for name, make in (("cremad", lambda p: make_cremad(p, video=False, frames=True)), ("vggsound", make_vggsound)):
        raw = make(tmp_path_factory.mktemp(f"{name}_raw"))
        for k, folder in enumerate(sorted((raw / "Image-01-FPS").iterdir())):
            n = len(list(folder.iterdir()))
            shutil.rmtree(folder)
            write_frames(folder, n=n, size=FRAME_SIZE, seed=k)
        cache = tmp_path_factory.mktemp(f"{name}_cache")
        prepare_dataset(name, raw, cache, progress=False)
        out[name] = raw, cache
    return out


def load(root, name, **kw):
    return load_paper_dataset(name, root, split="train", val_fraction=0, image_size=20, seed=3, **kw)


@pytest.mark.parametrize("name", ["cremad", "vggsound"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("visual_dtype", ["uint8", "float32"])
def test_cache_and_raw_readers_give_the_same_samples(layouts, name, train, visual_dtype):
    raw_root, cache_root = layouts[name]
    raw = load(raw_root, name, train=train, visual_dtype=visual_dtype)
    cache = load(cache_root, name, train=train, visual_dtype=visual_dtype)
    assert (raw.source, cache.source) == ("raw", "cache") and raw.clips == cache.clips and len(raw) >= 3
    indices = list(range(len(raw)))[::-1]
    for epoch in (0, 2):
        raw.set_epoch(epoch)
        cache.set_epoch(epoch)
        for batched in (False, True):
            a, b = (collate_samples(ds.__getitems__(indices) if batched else [ds[i] for i in indices])
                    for ds in (raw, cache))
            assert torch.equal(a["labels"], b["labels"])
            for m in ("audio", "visual"):
                x, y = a["inputs"][m], b["inputs"][m]
                assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), (m, epoch)
            assert a["inputs"]["visual"].dtype == (torch.uint8 if visual_dtype == "uint8" else torch.float32)


@pytest.mark.parametrize("train", [True, False])
def test_samples_are_the_paper_transform_of_the_chosen_frames(layouts, train):
    """A reference built here: the frames chosen by ``select_frames``, then ``train_transform`` /
    ``eval_transform`` over the whole frames, with the sample's own generator."""
    raw_root, cache_root = layouts["cremad"]
    for root in (raw_root, cache_root):
        ds = load(root, "cremad", train=train, visual_dtype="float32")
        ds.set_epoch(1)
        for index in (0, len(ds) - 1):
            g = torch.Generator().manual_seed(sample_seed(3, 1, index))
            files = list_frame_files(raw_root / "Image-01-FPS" / ds.clips[index])
            chosen = select_frames(len(files), ds.num_frames, train=train, generator=g)
            frames = torch.from_numpy(np.stack([read_image(files[i]) for i in chosen])).permute(0, 3, 1, 2)
            want = train_transform(frames, 20, generator=g) if train else eval_transform(frames, 20)
            got = ds[index]["inputs"]["visual"]
            assert got.shape == want.shape == (ds.num_frames, 3, 20, 20) and torch.equal(got, want)


def test_the_loaders_seed_seeds_the_augmentations(layouts):
    """``seed`` carves the split and seeds each sample's draws: another seed, other crops."""
    cache = layouts["cremad"][1]
    a, b = (load_paper_dataset("cremad", cache, split="train", val_fraction=0, image_size=20, seed=s, train=True)
            for s in (3, 4))
    assert (a.seed, b.seed) == (3, 4) and a.clips == b.clips
    differ = [not torch.equal(a[i]["inputs"]["visual"], b[i]["inputs"]["visual"]) for i in range(len(a))]
    assert sum(differ) >= len(a) - 1
