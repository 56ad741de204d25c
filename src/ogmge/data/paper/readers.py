"""Reading a clip: from a ``prepare`` cache (:class:`CacheReader`) or from the extracted
layout (:class:`RawReader`: WAV or video audio, frame folder or video), and frame selection.

Both are readers (:class:`ClipReader`): they write a clip's model inputs into tensors the dataset
hands them (a fresh tensor or a row of a batch buffer), with the same draws in the same order
(:func:`select_frames`, then :func:`crop_draws`), so a clip read from a cache and from the
layout it was prepared from gives the same sample."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..audio import check_finite, pcm16_to_float, read_wav
from ..errors import DataError
from ..transforms import frames_to_tensor, random_resized_crop_box, resize_into
from ..video import decode_video, list_frame_files, read_image
from .cache import NpyLayout, check_cached_clip, is_cache, read_manifest
from .spec import FRAMES_DIR, PaperSpec


def select_frames(n: int, t: int, *, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """Indices of ``t`` of ``n`` frames: random (sorted, without replacement when ``n >= t``)
    in training -- and these are the frames used -- or evenly spaced ``floor((k + 1/2) n / t)``."""
    if n <= 0:
        raise ValueError("no frame to select from")
    if train:
        if generator is None:
            raise ValueError("generator is required for random frame selection")
        if n >= t:
            idx = torch.randperm(n, generator=generator)[:t]
        else:
            idx = torch.randint(0, n, (t,), generator=generator)
        return sorted(idx.tolist())
    return [min(n - 1, int((k + 0.5) * n / t)) for k in range(t)]


def crop_draws(height: int, width: int, *, train: bool,
               generator: torch.Generator) -> tuple[int, int, int, int, bool]:
    """``(top, left, h, w, flip)`` of the paper's visual transform for ``(height, width)`` frames:
    in training the draws of :func:`~ogmge.data.transforms.train_transform` (random resized crop,
    then flip with p = 0.5), else the whole frame unflipped (:func:`~ogmge.data.transforms.eval_transform`)."""
    if not train:
        return 0, 0, height, width, False
    top, left, h, w = random_resized_crop_box(height, width, generator=generator)
    return top, left, h, w, float(torch.rand((), generator=generator)) < 0.5


class ClipReader(Protocol):
    """What :class:`~ogmge.data.paper.dataset.PaperDataset` asks of a reader."""

    source: str                 # "cache" or "raw"
    default_visual_dtype: str   # "uint8" or "float32"

    def check(self, clip: str, *, validate: bool) -> None:
        """Raise :class:`DataError` when ``clip`` cannot be read."""

    def audio(self, clip: str) -> tuple[np.ndarray, str | Path]:
        """The clip's audio array as cached (spectrogram, or waveform for VGGSound) and its source."""

    def audio_into(self, clip: str, out: torch.Tensor) -> str | Path:
        """Write :meth:`audio` into ``out`` (float32, of its shape); return its source."""

    def frames_into(self, out: torch.Tensor, clip: str, *, train: bool, generator: torch.Generator) -> None:
        """Write the visual input ``(T, 3, S, S)`` into ``out``: ``T`` frames chosen by
        :func:`select_frames`, cropped and flipped by :func:`crop_draws`, resized by
        :func:`~ogmge.data.transforms.resize_into` (uint8, or ImageNet-normalised float32)."""


def raw_sources(spec: PaperSpec, root: Path, clip: str) -> tuple[Path, Path]:
    """``(audio source, frames source)`` of a clip in the extracted layout: the WAV, else the
    video; the frame folder, else the video. Raises ``missing`` :class:`DataError` if absent."""
    wav = root / spec.audio_dir / f"{clip}.wav"
    frames = root / FRAMES_DIR / clip
    video = root / spec.video_dir / f"{clip}{spec.video_ext}"
    audio_src = wav if wav.exists() else video if video.exists() else None
    frame_src = frames if frames.is_dir() else video if video.exists() else None
    if audio_src is None:
        raise DataError(wav, "missing", f"clip {clip!r}: no audio file (nor {video})")
    if frame_src is None:
        raise DataError(frames, "missing", f"clip {clip!r}: no frame folder (nor {video})")
    return audio_src, frame_src


def load_raw_audio(spec: PaperSpec, src: Path, decoded=None) -> tuple[np.ndarray, int]:
    """Float32 mono waveform and rate from a WAV or a video's audio track (``decoded``: an
    already decoded :class:`~ogmge.data.video.DecodedVideo` of ``src``)."""
    if src.suffix.lower() == ".wav":
        return read_wav(src, expected_rate=spec.expected_rate)
    if decoded is None:
        decoded = decode_video(src, audio=True, max_frames=1)
    if decoded.audio is None:
        raise DataError(src, "undecodable", "video has no audio track")
    if spec.expected_rate is not None and decoded.sample_rate != spec.expected_rate:
        raise DataError(src, "sample_rate", f"sample rate {decoded.sample_rate} Hz, expected {spec.expected_rate} Hz")
    wave = pcm16_to_float(decoded.audio)
    return wave, int(decoded.sample_rate)


def compute_audio(spec: PaperSpec, src: Path, decoded=None) -> np.ndarray:
    """The cached audio array of a clip (spectrogram or waveform), checked finite and shaped."""
    wave, rate = load_raw_audio(spec, src, decoded)
    out = np.ascontiguousarray(spec.audio_feature(wave, rate).numpy(), dtype=np.float32)
    check_finite(out, src, "audio features")
    if spec.cached_audio == "spectrogram" and out.shape != spec.audio_shape:
        raise DataError(src, "shape", f"audio features of shape {out.shape}, expected {spec.audio_shape}")
    return out


class CacheReader:
    """Reads clips from a ``prepare`` cache (``root/clips/<clip>/{audio,frames}.npy``):
    headers checked once per clip, only the needed frames (and lines) read."""

    source = "cache"
    default_visual_dtype = "uint8"

    def __init__(self, spec: PaperSpec, root: Path) -> None:
        read_manifest(root, spec.name)
        self.spec, self.root = spec, root
        self.clips_dir = os.fspath(root / "clips")
        self._layouts: dict[str, tuple[NpyLayout, NpyLayout]] = {}

    def check(self, clip: str, *, validate: bool) -> None:
        """Raise :class:`DataError` when ``clip`` cannot be read (headers too, with ``validate``)."""
        d = self.root / "clips" / clip
        if validate:
            self._layouts[clip] = check_cached_clip(d, self.spec)
        elif not d.is_dir():
            raise DataError(d, "missing", "clip not in the cache")

    def layout(self, clip: str) -> tuple[NpyLayout, NpyLayout]:
        if clip not in self._layouts:
            self._layouts[clip] = check_cached_clip(self.root / "clips" / clip, self.spec)
        return self._layouts[clip]

    def path(self, clip: str, what: str) -> str:
        return os.path.join(self.clips_dir, clip, f"{what}.npy")

    def audio(self, clip: str) -> tuple[np.ndarray, str]:
        """The cached audio array and where it came from."""
        path = self.path(clip, "audio")
        return self.layout(clip)[0].load(path), path

    def audio_into(self, clip: str, out: torch.Tensor) -> str:
        """The cached audio read from its file straight into ``out``."""
        path = self.path(clip, "audio")
        self.layout(clip)[0].read_into(path, out.numpy())
        return path

    def frames_into(self, out: torch.Tensor, clip: str, *, train: bool, generator: torch.Generator) -> None:
        """Reads only the chosen frames, and of them only the crop's lines."""
        layout = self.layout(clip)[1]
        n, height, width = layout.shape[:3]
        idx = select_frames(n, out.shape[0], train=train, generator=generator)
        top, left, h, w, flip = crop_draws(height, width, train=train, generator=generator)
        lines = layout.rows(self.path(clip, "frames"), idx, lines=(top, h))
        resize_into(out, frames_to_tensor(lines)[..., left:left + w], flip=flip)


class RawReader:
    """Reads clips from the extracted layout (WAV or video audio, frame folder or video),
    computing the audio features on every read."""

    source = "raw"
    default_visual_dtype = "float32"

    def __init__(self, spec: PaperSpec, root: Path) -> None:
        self.spec, self.root = spec, root

    def check(self, clip: str, *, validate: bool) -> None:
        raw_sources(self.spec, self.root, clip)

    def audio(self, clip: str) -> tuple[np.ndarray, Path]:
        path, _ = raw_sources(self.spec, self.root, clip)
        return compute_audio(self.spec, path), path

    def audio_into(self, clip: str, out: torch.Tensor) -> Path:
        audio, path = self.audio(clip)
        out.copy_(torch.from_numpy(audio))
        return path

    def frames_into(self, out: torch.Tensor, clip: str, *, train: bool, generator: torch.Generator) -> None:
        """Decodes only the chosen frames of a frame folder (a video is decoded whole)."""
        _, src = raw_sources(self.spec, self.root, clip)
        if src.is_dir():
            files = list_frame_files(src)
            idx = select_frames(len(files), out.shape[0], train=train, generator=generator)
            imgs = [read_image(files[i]) for i in idx]
        else:
            allf = decode_video(src, audio=False).frames
            idx = select_frames(len(allf), out.shape[0], train=train, generator=generator)
            imgs = [allf[i] for i in idx]
        if len({i.shape for i in imgs}) != 1:
            raise DataError(src, "shape", f"frames of different sizes {[i.shape for i in imgs]}")
        frames = frames_to_tensor(np.stack(imgs))
        top, left, h, w, flip = crop_draws(*frames.shape[-2:], train=train, generator=generator)
        resize_into(out, frames[..., top:top + h, left:left + w], flip=flip)


def open_reader(spec: PaperSpec, root: Path) -> ClipReader:
    """The reader of ``root``: a cache when it holds ``manifest.json``, else the extracted layout."""
    return CacheReader(spec, root) if is_cache(root) else RawReader(spec, root)
