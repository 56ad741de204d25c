"""The cache format written by :mod:`ogmge.data.prepare` and read by :class:`~ogmge.data.paper.readers.CacheReader`.

Layout::

    CACHE/manifest.json             {"format": "ogmge-paper-cache", "dataset": ..., ...}
    CACHE/splits/<official files>   copies of the split files found in the source
    CACHE/clips/<clip>/audio.npy    float32 spectrogram (1, F, T), or waveform (L,) (VGGSound)
    CACHE/clips/<clip>/frames.npy   uint8 (N, H, W, 3), frames at 1 fps, shorter side 256
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .spec import PaperSpec

CACHE_FORMAT = "ogmge-paper-cache"


CACHE_VERSION = 1


def is_cache(root: str | os.PathLike) -> bool:
    return (Path(root) / "manifest.json").is_file()


def read_manifest(root: str | os.PathLike, dataset: str) -> dict:
    path = Path(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    if manifest.get("format") != CACHE_FORMAT or manifest.get("version") != CACHE_VERSION:
        raise ValueError(f"{path}: not an ogmge cache of version {CACHE_VERSION}")
    if manifest.get("dataset") != dataset:
        raise ValueError(f"{path}: cache of {manifest.get('dataset')!r}, not {dataset!r}")
    return manifest


@dataclass(frozen=True)
class NpyLayout:
    """Where a C-ordered ``.npy`` array's data starts, its shape and dtype."""

    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def read(cls, path: Path) -> NpyLayout:
        fmt = np.lib.format
        try:
            with open(path, "rb") as f:
                version = fmt.read_magic(f)
                reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, fortran, dtype = reader(f)
                offset = f.tell()
            size = os.path.getsize(path)
        except Exception as exc:
            raise DataError(path, "undecodable", f"cannot read .npy header ({exc})") from exc
        if fortran or dtype.hasobject:
            raise DataError(path, "undecodable", "expected a C-ordered numeric .npy array")
        if offset + int(np.prod(shape)) * dtype.itemsize > size:
            raise DataError(path, "truncated", "the .npy file is shorter than its header declares")
        return cls(offset, tuple(shape), dtype)

    def load(self, path: str | Path) -> np.ndarray:
        """The whole array (read with one ``fromfile``)."""
        count = math.prod(self.shape)
        return np.fromfile(path, dtype=self.dtype, count=count, offset=self.offset).reshape(self.shape)

    def rows(self, path: str | Path, index: Sequence[int], lines: tuple[int, int] | None = None) -> np.ndarray:
        """``array[index]`` along the first axis, reading only those rows; ``lines=(start, n)``
        reads only ``array[index, start:start + n]`` (for a crop of frames ``(N, H, W, 3)``)."""
        row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        sub = self.shape[1:]
        skip = 0
        if lines is not None:
            start, n = lines
            line_bytes = math.prod(self.shape[2:]) * self.dtype.itemsize
            sub, skip = (n, *self.shape[2:]), start * line_bytes
        out = np.empty((len(index), *sub), dtype=self.dtype)
        with open(path, "rb", buffering=0) as f:
            for k, i in enumerate(index):
                f.seek(self.offset + int(i) * row_bytes + skip)
                _read_exactly(f, out[k], path)
        return out

    def read_into(self, path: str | Path, out: np.ndarray) -> np.ndarray:
        """The whole array, read straight into ``out`` (C-contiguous, of its shape and dtype)."""
        if out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"read_into: need a C-contiguous {self.dtype} {self.shape} array")
        with open(path, "rb", buffering=0) as f:
            f.seek(self.offset)
            _read_exactly(f, out, path)
        return out


def _read_exactly(f, out: np.ndarray, path) -> None:
    view = memoryview(out).cast("B")  # type: ignore[arg-type]  # ndarray has the buffer protocol
    got = f.readinto(view)
    while got is not None and 0 < got < len(view):
        more = f.readinto(view[got:])
        if not more:
            break
        got += more
    if got != len(view):
        raise DataError(path, "truncated", "the .npy file is shorter than its header declares")


def check_cached_clip(clip_dir: Path, spec: PaperSpec) -> tuple[NpyLayout, NpyLayout]:
    """Header check of a cached clip's arrays (reads no data); returns their layouts."""
    for fname in ("audio.npy", "frames.npy"):
        if not (clip_dir / fname).is_file():
            raise DataError(clip_dir / fname, "missing", "cached array not found (clip not prepared?)")
    audio = NpyLayout.read(clip_dir / "audio.npy")
    frames = NpyLayout.read(clip_dir / "frames.npy")
    want = spec.audio_shape if spec.cached_audio == "spectrogram" else None
    if audio.dtype != np.float32 or (want is not None and audio.shape != want) or (
        want is None and len(audio.shape) != 1
    ):
        raise DataError(clip_dir / "audio.npy", "shape",
                        f"cached audio {audio.dtype} {audio.shape}, expected float32 {want or '(L,)'}")
    if frames.dtype != np.uint8 or len(frames.shape) != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise DataError(clip_dir / "frames.npy", "shape",
                        f"cached frames {frames.dtype} {frames.shape}, expected uint8 (N, H, W, 3)")
    return audio, frames
