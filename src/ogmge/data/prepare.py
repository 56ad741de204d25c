"""``ogmge prepare``: raw paper datasets -> a compact, memory-mappable, resumable cache.

For every clip listed in the dataset's official split files (found in ``source``): audio
from the WAV (or the video's track, 16-bit PCM via PyAV), frames from the 1 fps JPEG folder
(or the video decoded at 1 fps); the deterministic audio features are precomputed (VGGSound
keeps its 10 s 16 kHz waveform for random crops); frames are resized so the shorter side is
256 and stored as uint8 ``(N, H, W, 3)`` ``.npy``. Layout: see :mod:`ogmge.data.paper.cache`.

Each clip is written into a temporary folder and renamed into place, so it is either complete
or absent; a re-run skips the clips already there. Bad clips raise :class:`DataError` naming
the file (``on_error="raise"``) or are skipped, counted and listed in ``skipped.txt``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io_utils import atomic_write_text
from ..validation import check_choice, check_positive_int
from .errors import DataError, check_on_error
from .paper import DATASETS
from .paper.cache import CACHE_FORMAT, CACHE_VERSION
from .paper.readers import compute_audio, raw_sources
from .paper.spec import FRAMES_DIR
from .paper.splits import check_clip_ids
from .video import decode_video, list_frame_files, read_image, resize_shorter

SHORTER_SIDE = 256
TMP_PREFIX = ".tmp-"


@dataclass
class PrepareReport:
    """Counts of one ``prepare`` run; ``skipped`` holds ``(clip or file, kind, reason)``."""

    dataset: str
    listed: int = 0
    prepared: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.dataset}: {self.listed} clips listed, {self.prepared} prepared, "
                f"{self.already_done} already done, {len(self.skipped)} skipped ({self.seconds:.1f} s)")


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _stack_frames(images: list[np.ndarray], where) -> np.ndarray:
    frames = [resize_shorter(img, SHORTER_SIDE) for img in images]
    if len({f.shape for f in frames}) != 1:
        raise DataError(where, "shape", f"frames of different sizes {sorted({f.shape for f in frames})}")
    return np.stack(frames).astype(np.uint8, copy=False)


def prepare_clip(name: str, source: str, out: str, clip: str) -> tuple[str, str | None, str | None, str | None]:
    """Write one clip into ``out/clips/<clip>``; returns ``(clip, None, None, None)`` or
    ``(clip, path, kind, reason)`` of the :class:`DataError` that stopped it."""
    spec = DATASETS[name].SPEC
    final = Path(out) / "clips" / clip
    if final.is_dir():
        return clip, None, None, None
    try:
        audio_src, frame_src = raw_sources(spec, Path(source), clip)
        decoded = None
        if frame_src.is_file():
            decoded = decode_video(frame_src, fps=1.0, audio=(audio_src == frame_src))
            frames = _stack_frames(list(decoded.frames), frame_src)
        else:
            frames = _stack_frames([read_image(f) for f in list_frame_files(frame_src)], frame_src)
        audio = compute_audio(spec, audio_src, decoded if audio_src == frame_src else None)
    except DataError as exc:
        return clip, exc.path, exc.kind, exc.reason
    write_clip(final, {"audio": audio, "frames": frames})
    return clip, None, None, None


def write_clip(final: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as ``<name>.npy`` into a temporary folder beside ``final`` and rename it
    into place, so the clip folder is either complete or absent."""
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}.{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, array in arrays.items():
        _save_array(tmp / f"{name}.npy", array)
    try:
        os.rename(tmp, final)
    except OSError:  # another run finished it first
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(clips_dir: Path) -> None:
    """Remove the temporary clip folders a killed run left in ``clips_dir``."""
    for stale in clips_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def record_result(report: PrepareReport, on_error: str):
    """The ``on_result`` of :func:`run_jobs` for clip jobs returning ``(clip, path, kind,
    reason)``: counts a prepared clip (``path`` and ``kind`` None); a failed one raises
    :class:`DataError` (``on_error="raise"``) or joins ``report.skipped``."""

    def record(result) -> None:
        clip, path, kind, reason = result
        if path is None and kind is None:
            report.prepared += 1
            return
        if on_error == "raise":
            raise DataError(path, kind, f"clip {clip!r}: {reason}")
        report.skipped.append((clip, kind, f"{path}: {reason}"))

    return record


def run_jobs(func, args: list[tuple], *, workers: int, on_result, desc: str, progress: bool) -> None:
    """``on_result(func(*a))`` for every ``a`` in ``args`` (in completion order), in this process
    (``workers == 1``) or in a pool of ``workers`` processes, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(args), desc=desc, unit="clip", disable=not progress)
    try:
        if workers == 1 or len(args) <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # per-clip tensors are small: threads only contend (as in workers)
            try:
                for a in args:
                    result = func(*a)
                    bar.update(1)
                    on_result(result)
            finally:
                torch.set_num_threads(threads)
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for result in pool.imap_unordered(functools.partial(_star, func), args, chunksize=1):
                    bar.update(1)
                    on_result(result)
    finally:
        bar.close()


def _star(func, a):
    return func(*a)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def prepare_dataset(
    name: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    on_error: str = "raise",
    split_file: str | os.PathLike | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every listed clip of ``name`` from ``source`` into the cache ``out``.

    ``workers`` processes work in parallel (1: in this process). Writes ``manifest.json``,
    ``splits/``, ``clips/``, ``prepare_report.json`` and ``skipped.txt`` (``clip<TAB>kind<TAB>reason``).
    """
    check_choice("dataset", name, sorted(DATASETS))
    check_positive_int("workers", workers)
    check_on_error(on_error)
    module = DATASETS[name]
    spec = module.SPEC
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    t0 = time.perf_counter()
    parsed = module.all_records(source, split_file, on_error=on_error)
    check_clip_ids(parsed.records)
    report = PrepareReport(name)
    report.skipped += [(where, "label", why) for where, why in parsed.skipped]
    clips = list(dict.fromkeys(r.clip for r in parsed.records))
    report.listed = len(clips) + len(parsed.skipped)

    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "splits").mkdir(exist_ok=True)
    for fname in dict.fromkeys(spec.split_files.values()):
        src = Path(split_file) if (split_file and fname == spec.split_files["train"]) else source / fname
        if src.is_file():
            _atomic_write_text(out / "splits" / fname, src.read_text(encoding="utf-8-sig"))
    manifest = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "dataset": name,
        "audio": spec.cached_audio, "audio_shape": list(spec.audio_shape), "frames_dir": FRAMES_DIR,
        "shorter_side": SHORTER_SIDE,
    }
    _atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    remove_stale(out / "clips")

    todo = [c for c in clips if not (out / "clips" / c).is_dir()]
    report.already_done = len(clips) - len(todo)
    args = [(name, str(source), str(out), c) for c in todo]
    run_jobs(prepare_clip, args, workers=workers, on_result=record_result(report, on_error), desc=f"prepare {name}", progress=progress)
    report.seconds = time.perf_counter() - t0
    write_report(out, report)
    return report


def write_report(out: Path, report: PrepareReport) -> None:
    """``skipped.txt`` (``clip<TAB>kind<TAB>reason`` lines) and ``prepare_report.json``."""
    lines = [f"{clip}\t{kind}\t{reason}" for clip, kind, reason in report.skipped]
    _atomic_write_text(out / "skipped.txt", "".join(line + "\n" for line in lines))
    data = asdict(report)
    data["skipped_count"] = len(report.skipped)
    _atomic_write_text(out / "prepare_report.json", json.dumps(data, indent=1) + "\n")
