"""Speed of ``ogmge prepare clips``: clips/s on generated clips.

Generates ``--clips`` clips (default 100) of ``--seconds`` (3 s) at ``--size`` (320x240),
25 fps (MPEG-4 Part 2 video, AAC stereo audio at 44.1 kHz, in .mp4), in ``--classes`` class
folders, then times ``prepare_clips(folder, fresh cache, workers=--workers)`` with the default
settings (1 fps, 22,050 Hz, 3 s, STFT 512/353) ``--rounds`` times (each into a new cache), and
once more resuming a finished cache (every clip already done). Prints clips/s per round and the
median.

Run: ``python benchmarks/prepare_clips_speed.py [--workers 2] [--clips 100] [--rounds 3]
[--workdir DIR]``. Generated clips are kept in ``--workdir`` (default: a temporary folder) and
reused when present.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ogmge.data.clips import prepare_clips


def write_clip(path: Path, *, seconds: float, size: tuple[int, int], fps: int, seed: int) -> None:
    """A moving gradient with noise (so the encoder has work to do) and a stereo tone."""
    import av

    rng = np.random.default_rng(seed)
    h, w = size
    rate = 44100
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        a.layout = "stereo"
        yy, xx = np.mgrid[0:h, 0:w]
        for k in range(int(seconds * fps)):
            img = ((xx + yy + 4 * k + 17 * seed) % 256).astype(np.uint8)
            img = np.stack([img, img[::-1], np.roll(img, k, axis=1)], axis=-1)
            img = np.clip(img + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        n = int(seconds * rate)
        t = np.arange(n) / rate
        tone = 0.2 * np.sin(2 * np.pi * (200 + 10 * seed) * t) + 0.02 * rng.standard_normal(n)
        pcm = np.stack([tone, 0.5 * tone]).astype(np.float32)
        step = a.codec_context.frame_size or 1024
        for k in range(0, n, step):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, k:k + step]), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts = rate, k
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


def make_clips(folder: Path, n: int, classes: int, seconds: float, size: tuple[int, int]) -> None:
    done = folder / ".complete"
    if done.is_file() and done.read_text() == f"{n} {classes} {seconds} {size}":
        return
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    for i in range(n):
        d = folder / f"class{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        write_clip(d / f"clip{i:04d}.mp4", seconds=seconds, size=size, fps=25, seed=i)
    done.write_text(f"{n} {classes} {seconds} {size}")
    print(f"generated {n} clips in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", default="320x240", help="WxH")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="prepare_clips_speed_"))
    src = work / "clips"
    make_clips(src, args.clips, args.classes, args.seconds, (h, w))
    rates = []
    for r in range(args.rounds):
        out = work / f"cache{r}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        report = prepare_clips(src, out, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
        assert report.prepared == args.clips and not report.skipped, report.summary()
        rates.append(args.clips / dt)
        print(f"round {r + 1}: {args.clips} clips in {dt:.2f} s = {rates[-1]:.1f} clips/s")
    t0 = time.perf_counter()
    report = prepare_clips(src, work / f"cache{args.rounds - 1}", workers=args.workers, progress=False)
    resume = time.perf_counter() - t0
    assert report.already_done == args.clips
    print(f"prepare clips, {args.clips} clips of {args.seconds:g} s {w}x{h} 25 fps (AAC stereo 44.1 kHz), "
          f"--workers {args.workers}: median {statistics.median(rates):.1f} clips/s "
          f"(range {min(rates):.1f}-{max(rates):.1f}); resuming a finished cache {resume:.2f} s")


if __name__ == "__main__":
    main()
