"""Data throughput: a paper-style per-sample pipeline vs ``ogmge`` reading its ``prepare`` cache.

Generates N CREMA-D-like clips (3 s of 16 kHz audio, three 360x480 JPEG frames at 1 fps),
then measures samples/s through a DataLoader with 2 workers (training mode: random frame,
random-resized-crop 224, flip, ImageNet normalisation) of

  (a) the paper-style pipeline: per sample decode the WAV, resample to 22,050 Hz, tile,
      STFT 512/353, log; decode the JPEG, random-resized-crop 224, normalise
      (``load_paper_dataset("cremad", RAW, ...)`` on the extracted layout);
  (b) ours from the cache: precomputed spectrogram and uint8 frames (shorter side 256) read
      from the ``.npy`` files, the same random-resized-crop 224 (in uint8, as in (a)); the
      workers fetch a batch at once (``PaperDataset.__getitems__``: the audio and the resized
      uint8 crops written straight into one shared-memory batch), and the ImageNet
      normalisation runs on each batch in the main process (``VisualEncoder.normalize``, the
      arithmetic the model applies to uint8 input), inside the timed loop.

Both end with float32 ImageNet-normalised frames in the main process.

Run: ``python benchmarks/data_throughput.py [--clips 200] [--epochs 3] [--min-seconds 3]
[--rounds 3] [--workdir DIR]``. Each round measures (a) then (b), each with a fresh DataLoader
whose first epoch warms the workers and the page cache; a rate is over the remaining epochs (at
least ``--epochs - 1`` of them, and more until ``--min-seconds`` have passed). The medians and
ranges over the rounds are printed, the ratio per round (so both sides of it saw the same load).
Last, the ceiling of (b) on this machine: the same DataLoader and per-batch normalisation over a
dataset that does no work (samples of (b)'s shapes and dtypes, left uninitialised).
The main process runs with ``--main-threads`` torch threads (default 1) in both measurements:
the two workers already occupy the cores, and more threads there only contend with them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ogmge.data.collate import collate_samples
from ogmge.data.paper import load_paper_dataset
from ogmge.data.paper.cremad import CLASS_NAMES
from ogmge.data.prepare import prepare_dataset
from ogmge.models import VisualEncoder


def make_clips(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    base = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    t = np.arange(3 * 16000) / 16000
    for i in range(n):
        clip = f"{1001 + i % 91}_C{i:04d}_{CLASS_NAMES[i % 6]}_XX"
        wave = 0.3 * np.sin(2 * np.pi * (200 + i) * t) + 0.02 * rng.standard_normal(t.size)
        (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
        sf.write(root / "AudioWAV" / f"{clip}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
        folder = root / "Image-01-FPS" / clip
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(3):
            img = np.roll(base, 7 * i + 13 * k, axis=1)
            Image.fromarray(img).save(folder / f"{k + 1:06d}.jpg", quality=90)
        rows.append(f"{clip},{CLASS_NAMES[i % 6]}\r\n")
    (root / "train.csv").write_text("".join(rows), newline="")
    (root / "test.csv").write_text(rows[0], newline="")


def rate(dataset, *, epochs: int, batch_size: int, workers: int, min_seconds: float = 0.0,
         on_batch=None) -> float:
    """Samples/s over the epochs after the first; ``on_batch(batch)`` runs on each batch in the
    main process (timed). Runs at least ``epochs`` epochs, and more until ``min_seconds`` passed."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate_samples, persistent_workers=workers > 0, pin_memory=False,
                        generator=torch.Generator().manual_seed(0))
    seen, start, epoch = 0, None, 0
    while epoch < epochs or time.perf_counter() - start < min_seconds:
        if epoch == 1:
            start, seen = time.perf_counter(), 0
        dataset.set_epoch(epoch)
        for batch in loader:
            if on_batch is not None:
                on_batch(batch)
            seen += batch["labels"].numel()
        epoch += 1
    return seen / (time.perf_counter() - start)


class NoWork(Dataset):
    """``n`` samples shaped like ``like[0]``'s, uninitialised: what moving them costs."""

    def __init__(self, like, n: int) -> None:
        s = like[0]
        self.n, self.label = n, s["label"]
        self.shapes = {k: (v.shape, v.dtype) for k, v in s["inputs"].items()}

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        pass

    def __getitem__(self, index: int) -> dict:
        return {"inputs": {k: torch.empty(shape, dtype=dt) for k, (shape, dt) in self.shapes.items()},
                "label": self.label}


def check_same_output(cache, root, normalise, n: int = 8) -> float:
    """Largest difference between (b)'s uint8 frames normalised per batch and the same cache
    read with ``visual_dtype="float32"`` (normalised in the dataset, like (a)): same values."""
    ref = load_paper_dataset("cremad", root, split="train", val_fraction=0, seed=0, visual_dtype="float32")
    worst = 0.0
    for i in range(n):
        a, b = ref[i]["inputs"]["visual"], cache[i]["inputs"]["visual"]
        assert a.dtype == torch.float32 and b.dtype == torch.uint8, (a.dtype, b.dtype)
        worst = max(worst, float((normalise(b) - a).abs().max()))
    return worst


class _Batches:
    """``batches[k]``: the samples of batch ``k`` (``__getitems__``), as a DataLoader worker fetches them."""

    def __init__(self, dataset, size: int) -> None:
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset) // self.size

    def __getitem__(self, k: int) -> list:
        return self.dataset.__getitems__(list(range(k * self.size, (k + 1) * self.size)))


def per_sample_ms(dataset, n: int = 100, post=None) -> float:
    """Single-process, single-thread cost of ``dataset[i]`` (no DataLoader transfer), plus
    ``post(sample)`` when given."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    post = post or (lambda sample: None)
    try:
        post(dataset[0])
        start = time.perf_counter()
        for i in range(n):
            post(dataset[i % len(dataset)])
        return (time.perf_counter() - start) / n * 1000
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (the first is warm-up)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0,
                    help="keep measuring each pipeline (whole epochs) for at least this long")
    ap.add_argument("--rounds", type=int, default=3, help="measure (a) then (b) this many times")
    ap.add_argument("--main-threads", type=int, default=1,
                    help="torch threads of the main process during both DataLoader measurements "
                         "(default 1: the workers already use the cores)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.clips < 200 or args.epochs < 2 or args.rounds < 1:
        ap.error("--clips must be >= 200, --epochs >= 2 and --rounds >= 1")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        raw, cache = Path(tmp) / "raw", Path(tmp) / "cache"
        t0 = time.perf_counter()
        make_clips(raw, args.clips)
        t1 = time.perf_counter()
        prepare_dataset("cremad", raw, cache, workers=args.workers, progress=False)
        t2 = time.perf_counter()
        print(f"generated {args.clips} clips in {t1 - t0:.1f} s; prepare (workers={args.workers}) "
              f"{t2 - t1:.1f} s = {args.clips / (t2 - t1):.1f} clips/s")
        kw = dict(split="train", val_fraction=0, seed=0)
        # (a) normalises in the dataset (float32 frames), (b) on the batch (uint8 frames)
        raw_ds = load_paper_dataset("cremad", raw, visual_dtype="float32", **kw)
        cache_ds = load_paper_dataset("cremad", cache, visual_dtype="uint8", **kw)
        normaliser = VisualEncoder(width=1).normalize

        def normalise_batch(batch):
            batch["inputs"]["visual"] = normaliser(batch["inputs"]["visual"])

        diff = check_same_output(cache_ds, cache, normaliser)
        timing = dict(epochs=args.epochs, batch_size=args.batch_size, workers=args.workers,
                      min_seconds=args.min_seconds)
        print(f"DataLoader, {args.workers} workers, batch {args.batch_size}, main process "
              f"{args.main_threads} thread(s); (b) normalised per batch vs "
              f"in the dataset: max abs difference {diff:.2g}")
        threads = torch.get_num_threads()
        torch.set_num_threads(args.main_threads)
        papers, ours, ratios = [], [], []
        try:
            for k in range(args.rounds):  # (a) then (b) in each round: both see the same load
                papers.append(rate(raw_ds, **timing))
                ours.append(rate(cache_ds, on_batch=normalise_batch, **timing))
                ratios.append(ours[-1] / papers[-1])
                print(f"  round {k + 1}: (a) {papers[-1]:7.1f}  (b) {ours[-1]:7.1f} samples/s  "
                      f"ratio {ratios[-1]:.1f}x", flush=True)
        finally:
            torch.set_num_threads(threads)

        def summary(values, unit):
            return f"median {statistics.median(values):8.1f}{unit} (range {min(values):.1f}-{max(values):.1f})"

        print(f"(a) paper-style per-sample pipeline: {summary(papers, ' samples/s')}")
        print(f"(b) ogmge from the prepare cache:    {summary(ours, ' samples/s')}  "
              "(normalised per batch in the main process)")
        print(f"ratio (b)/(a) per round:             {summary(ratios, 'x')}  (target >= 10x)")
        torch.set_num_threads(args.main_threads)
        try:
            ceiling = rate(NoWork(cache_ds, len(cache_ds)), on_batch=normalise_batch, **timing)
        finally:
            torch.set_num_threads(threads)
        print(f"ceiling of (b): a dataset doing no work, same samples and normalisation: {ceiling:.1f} samples/s")
        ms_a = per_sample_ms(raw_ds)
        ms_b = per_sample_ms(cache_ds, post=lambda s: normaliser(s["inputs"]["visual"]))
        print(f"one process, one thread, dataset[i] only ((b) + its normalisation): (a) {ms_a:.2f} ms, (b) {ms_b:.2f} ms, "
              f"ratio {ms_a / ms_b:.1f}x")
        ms_batched = per_sample_ms(_Batches(cache_ds, args.batch_size), n=20,
                                   post=lambda b: normaliser(collate_samples(b)["inputs"]["visual"])) / args.batch_size
        print(f"one process, one thread, (b) fetched {args.batch_size} at a time (__getitems__ + collate + "
              f"normalisation): {ms_batched:.2f} ms per sample")


if __name__ == "__main__":
    main()
