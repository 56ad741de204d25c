"""Data throughput: a paper-style per-sample pipeline vs ``ogmge`` reading its ``prepare`` cache.

Generates N CREMA-D-like clips (3 s of 16 kHz audio, three 360x480 JPEG frames at 1 fps),
then measures samples/s through a DataLoader with 2 workers (training mode: random frame,
random-resized-crop 224, flip, ImageNet normalisation) of

  (a) the paper-style pipeline: per sample decode the WAV, resample to 22,050 Hz, tile,
      STFT 512/353, log; decode the JPEG, random-resized-crop 224, normalise
      (``load_paper_dataset("cremad", RAW, ...)`` on the extracted layout);
  (b) ours from the cache: memory-mapped precomputed spectrogram and uint8 frames (shorter
      side 256), the same random-resized-crop 224 and normalisation.

Run: ``python benchmarks/data_throughput.py [--clips 200] [--epochs 2] [--workdir DIR]``.
The first epoch warms workers and the page cache; the rate is over the remaining epochs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ogmge.data.collate import collate_samples
from ogmge.data.paper import load_paper_dataset
from ogmge.data.paper.cremad import CLASS_NAMES
from ogmge.data.prepare import prepare_dataset


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


def rate(dataset, *, epochs: int, batch_size: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate_samples, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    seen, start = 0, None
    for epoch in range(epochs):
        if epoch == 1:
            start, seen = time.perf_counter(), 0
        dataset.set_epoch(epoch)
        for batch in loader:
            seen += batch["labels"].numel()
    return seen / (time.perf_counter() - start)


def per_sample_ms(dataset, n: int = 100) -> float:
    """Single-process, single-thread cost of ``dataset[i]`` (no DataLoader transfer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset[0]
        start = time.perf_counter()
        for i in range(n):
            dataset[i % len(dataset)]
        return (time.perf_counter() - start) / n * 1000
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (the first is warm-up)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.clips < 200 or args.epochs < 2:
        ap.error("--clips must be >= 200 and --epochs >= 2")
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
        paper = rate(load_paper_dataset("cremad", raw, **kw), epochs=args.epochs,
                     batch_size=args.batch_size, workers=args.workers)
        ours = rate(load_paper_dataset("cremad", cache, **kw), epochs=args.epochs,
                    batch_size=args.batch_size, workers=args.workers)
        print(f"DataLoader, {args.workers} workers, batch {args.batch_size}:")
        print(f"(a) paper-style per-sample pipeline: {paper:8.1f} samples/s")
        print(f"(b) ogmge from the prepare cache:    {ours:8.1f} samples/s")
        print(f"ratio (b)/(a): {ours / paper:.1f}x  (target >= 10x)")
        ms_a = per_sample_ms(load_paper_dataset("cremad", raw, **kw))
        ms_b = per_sample_ms(load_paper_dataset("cremad", cache, **kw))
        print(f"one process, one thread, dataset[i] only: (a) {ms_a:.2f} ms, (b) {ms_b:.2f} ms, "
              f"ratio {ms_a / ms_b:.1f}x")


if __name__ == "__main__":
    main()
