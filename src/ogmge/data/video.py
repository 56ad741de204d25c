"""Frames and audio from videos (PyAV, imported lazily) and from folders of JPEG frames.

:func:`decode_video` returns the frames sampled at ``fps`` (default 1, like ``ffmpeg -r 1``:
the first frame whose timestamp reaches ``k / fps``, for k = 0, 1, ...) as ``(H, W, 3)`` uint8
arrays and the audio track as 16-bit mono PCM at its native rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from os import PathLike

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: A stream ending this many seconds before the container's declared duration is truncated.
TRUNCATION_SLACK_S = 1.0


@dataclass
class DecodedVideo:
    """What :func:`decode_video` returns: ``frames (N, H, W, 3)`` uint8, ``audio (L,)`` int16 or None."""

    frames: np.ndarray
    audio: np.ndarray | None
    sample_rate: int | None


def _import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("decoding videos needs PyAV: pip install 'ogmge[video]'") from exc
    return av


def _check_file(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise DataError(path, "missing", f"{what} not found")
    if os.path.getsize(path) == 0:
        raise DataError(path, "empty", f"{what} is empty (0 bytes)")


def decode_video(
    path: str | PathLike, *, fps: float = 1.0, audio: bool = True, max_frames: int | None = None
) -> DecodedVideo:
    """Decode ``path`` (.mp4, .flv, ...): frames at ``fps`` and 16-bit mono audio.

    Raises :class:`DataError` naming the file when it is missing, empty, undecodable or
    truncated (no video frame, or a stream that stops with a decoding error).
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    av = _import_av()
    p = os.fspath(path)
    _check_file(p, "video file")
    frames: list[np.ndarray] = []
    pcm: list[np.ndarray] = []
    rate: int | None = None
    duration: float | None = None
    try:
        with av.open(p) as container:
            if not container.streams.video:
                raise DataError(p, "undecodable", "no video stream")
            duration = container.duration / 1e6 if container.duration else None
            next_t, last_t, stopped = 0.0, 0.0, False
            for frame in container.decode(video=0):
                t = frame.time if frame.time is not None else len(frames) / fps
                last_t = max(last_t, t)
                if t + 1e-6 >= next_t:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    next_t = len(frames) / fps
                    if max_frames is not None and len(frames) >= max_frames:
                        stopped = True
                        break
            if frames and not stopped and duration and last_t + TRUNCATION_SLACK_S < duration:
                raise DataError(p, "truncated", f"truncated: video frames end at {last_t:.2f} s "
                                f"of a declared {duration:.2f} s")
        if audio:
            with av.open(p) as container:
                if container.streams.audio:
                    resampler = None
                    for frame in container.decode(audio=0):
                        if resampler is None:  # keep the track's own rate; only format and layout change
                            rate = int(frame.sample_rate)
                            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
                        for out in resampler.resample(frame):
                            pcm.append(out.to_ndarray().reshape(-1))
                    if resampler is not None:
                        for out in resampler.resample(None):
                            pcm.append(out.to_ndarray().reshape(-1))
    except DataError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...), EOF, codec errors
        raise DataError(p, "undecodable", f"cannot decode video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise DataError(p, "undecodable", "no video frame could be decoded (truncated?)")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataError(p, "shape", f"frames of different sizes {sorted(shapes)}")
    samples = np.concatenate(pcm).astype(np.int16) if pcm else None
    if samples is not None and rate and duration and samples.size / rate + TRUNCATION_SLACK_S < duration:
        raise DataError(p, "truncated", f"truncated: audio ends at {samples.size / rate:.2f} s "
                        f"of a declared {duration:.2f} s")
    if audio and samples is not None and samples.size == 0:
        samples = None
    return DecodedVideo(np.stack(frames), samples, rate if samples is not None else None)


def list_frame_files(folder: str | PathLike) -> list[str]:
    """The image files of a frame folder (``.jpg``/``.jpeg``/``.png``), sorted by name."""
    d = os.fspath(folder)
    if not os.path.isdir(d):
        raise DataError(d, "missing", "frame folder not found")
    files = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise DataError(d, "empty", "frame folder holds no image")
    return [os.path.join(d, f) for f in files]


def read_image(path: str | PathLike) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB; bad files raise :class:`DataError`."""
    from PIL import Image

    p = os.fspath(path)
    _check_file(p, "image file")
    try:
        with Image.open(p) as img:
            img.load()
            arr = np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise DataError(p, "undecodable", f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(p, "shape", f"image has shape {arr.shape}")
    return arr


def resize_shorter(image: np.ndarray, shorter: int = 256) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image (PIL bilinear) so its shorter side is ``shorter``."""
    from PIL import Image

    h, w = image.shape[:2]
    if min(h, w) == shorter:
        return np.ascontiguousarray(image)
    if h <= w:
        size = (max(1, round(w * shorter / h)), shorter)
    else:
        size = (shorter, max(1, round(h * shorter / w)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
