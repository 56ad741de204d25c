"""Tiny audio-visual clips written with PyAV for the ``prepare clips`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_image(k: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Frame ``k``: grey level ``(20 k + 7 seed) % 200 + 30``, with a white block in the top-left
    corner (a quarter of each side) that shows which way is up."""
    h, w = size
    img = np.full((h, w, 3), (20 * k + 7 * seed) % 200 + 30, np.uint8)
    img[: h // 4, : w // 4] = 255
    return img


def write_clip(path: Path, *, seconds: float = 1.0, fps: int = 5, size: tuple[int, int] = (48, 64),
               audio: bool = True, video: bool = True, rate: int = 16000, channels: int = 1,
               rotation: int = 0, seed: int = 0) -> Path:
    """A clip of ``seconds`` at ``fps`` frames/s, ``size`` (H, W), a tone at ``rate`` Hz on
    ``channels`` channels; ``rotation``: display rotation metadata (degrees counter-clockwise).
    ``.mp4``/``.mov``/``.mkv``: mpeg4 + AAC; ``.flv``: flv1 + PCM; ``.avi``: mpeg4 + PCM."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    vcodec = "flv1" if ext == ".flv" else "mpeg4"
    acodec = "aac" if ext in (".mp4", ".mov", ".mkv", ".m4v") else "pcm_s16le"
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        if video:
            vs = c.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
            if rotation:
                vs.set_display_rotation(rotation)
        if audio:
            a = c.add_stream(acodec, rate=rate)
            a.layout = "mono" if channels == 1 else "stereo"
        if video:
            for k in range(int(round(seconds * fps))):
                frame = av.VideoFrame.from_ndarray(frame_image(k, size, seed), format="rgb24")
                for p in vs.encode(frame):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if audio:
            n = int(seconds * rate)
            t = np.arange(n) / rate
            wave = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.01 * rng.standard_normal(n)
            pcm = np.stack([wave * (1.0 - 0.5 * ch) for ch in range(channels)]).astype(np.float32)
            fmt = a.codec_context.format.name
            step = a.codec_context.frame_size or 1024
            for k in range(0, n, step):
                chunk = pcm[:, k:k + step]
                if fmt == "s16":
                    chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout=a.layout.name)
                fr.sample_rate, fr.pts = rate, k
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


#: relative path -> write_clip keywords: several containers, codecs, frame rates, sizes,
#: durations, rotations, mono/stereo and sample rates.
GOOD = {
    "cat/c1.mp4": dict(seconds=1.2, fps=5, size=(48, 64), seed=0),
    "cat/c2.flv": dict(seconds=2.5, fps=10, size=(40, 56), rate=22050, seed=1),
    "cat/sub/c3.mkv": dict(seconds=1.5, fps=4, size=(48, 64), rotation=90, channels=2, rate=44100, seed=2),
    "dog/d1.mov": dict(seconds=3.2, fps=6, size=(64, 48), rotation=-90, seed=3),
    "dog/d2.avi": dict(seconds=5.0, fps=2, size=(48, 64), rate=16000, seed=4),
    "owl/o1.mp4": dict(seconds=1.0, fps=25, size=(36, 48), rotation=180, seed=5),
    "owl/O2.MP4": dict(seconds=1.0, fps=8, size=(48, 64), seed=6),
}
GROUPS = {"cat/c1.mp4": "s1", "cat/c2.flv": "s2", "cat/sub/c3.mkv": "s1", "dog/d1.mov": "s2",
          "dog/d2.avi": "s3", "owl/o1.mp4": "s3", "owl/O2.MP4": "s1"}
IDS = {"cat/c1.mp4": "cat__c1", "cat/c2.flv": "cat__c2", "cat/sub/c3.mkv": "cat__sub__c3",
       "dog/d1.mov": "dog__d1", "dog/d2.avi": "dog__d2", "owl/o1.mp4": "owl__o1", "owl/O2.MP4": "owl__O2"}


def write_coded_clip(path: Path, vcodec: str, acodec: str | None, *, seconds: float = 1.2, fps: int = 5,
                     size: tuple[int, int] = (48, 64), rate: int = 48000, seed: int = 0) -> Path:
    """A clip in the codecs real files use (``libvpx``/``libvpx-vp9`` + ``libopus`` in webm,
    ``libx264`` + ``aac``/``libmp3lame`` in mp4); ``acodec`` None: no audio stream."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(vcodec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
        a = c.add_stream(acodec, rate=rate) if acodec else None
        if a is not None:
            a.layout = "mono"
        for k in range(int(round(seconds * fps))):
            for p in vs.encode(av.VideoFrame.from_ndarray(frame_image(k, size, seed), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            n = int(seconds * rate)
            wave = (0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * np.arange(n) / rate)).astype(np.float32)
            fmt = a.codec_context.format.name
            step = a.codec_context.frame_size or 1024
            scale = {"s16": (np.int16, 32767), "s16p": (np.int16, 32767), "s32": (np.int32, 2**31 - 1),
                     "s32p": (np.int32, 2**31 - 1)}.get(fmt)
            for k in range(0, n, step):
                chunk = np.pad(wave[k:k + step], (0, max(0, step - len(wave[k:k + step]))))[None]
                if scale is not None:
                    chunk = (chunk * scale[1]).astype(scale[0])
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout="mono")
                fr.sample_rate, fr.pts = rate, k
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path
