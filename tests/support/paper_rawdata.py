"""Tiny raw datasets in the official layouts, generated for the tests (WAV, JPEG, PyAV videos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

REFERENCE = (Path(__file__).resolve().parents[2].parent / "shared" / "reference").resolve()


def tone(seconds: float, rate: int, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000, seed: int = 0, subtype="PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, rate, 200 + 50 * seed, seed), rate, subtype=subtype)
    return path


def write_frames(folder: Path, n: int = 2, size=(36, 48), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{i + 1:06d}.jpg", quality=90)
    return folder


def write_video(path: Path, seconds: float = 2.0, fps: int = 5, size=(32, 48), rate: int = 16000,
                seed: int = 0, audio: bool = True) -> Path:
    """A short video: flv1 + PCM in .flv, mpeg4 + AAC in .mp4; frame k has grey level 10*k."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    flv = path.suffix == ".flv"
    options = {} if flv else {"movflags": "faststart"}  # moov first, as web videos are
    with av.open(str(path), "w", options=options) as c:
        vs = c.add_stream("flv1" if flv else "mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
        if audio:
            as_ = c.add_stream("pcm_s16le" if flv else "aac", rate=rate)
            as_.layout = "mono"
        for k in range(int(seconds * fps)):
            img = np.full((*size, 3), (10 * k + seed) % 256, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            pcm = (tone(seconds, rate, 300, seed) * 32767).astype(np.int16)
            n = 1024
            for k in range(0, pcm.size - n + 1, n):
                fr = av.AudioFrame.from_ndarray(pcm[None, k:k + n], format="s16", layout="mono")
                fr.sample_rate, fr.pts = rate, k
                for p in as_.encode(fr):
                    c.mux(p)
            for p in as_.encode():
                c.mux(p)
    return path


CREMAD_CLIPS = [
    ("1001_DFA_NEU_XX", "NEU"), ("1001_IEO_HAP_LO", "HAP"), ("1002_DFA_SAD_XX", "SAD"),
    ("1002_IEO_FEA_HI", "FEA"), ("1003_DFA_DIS_XX", "DIS"), ("1003_IEO_ANG_MD", "ANG"),
    ("1004_DFA_NEU_XX", "NEU"), ("1004_IEO_HAP_LO", "HAP"),
]


def make_cremad(root: Path, *, video: bool = True, frames: bool = False, n_test: int = 2) -> Path:
    """CREMA-D layout: AudioWAV/*.wav (16 kHz) + VideoFlash/*.flv (and/or Image-01-FPS/) + CRLF csvs."""
    rows = []
    for i, (clip, label) in enumerate(CREMAD_CLIPS):
        write_wav(root / "AudioWAV" / f"{clip}.wav", seconds=1.0 + 0.25 * (i % 3), seed=i)
        if video:
            write_video(root / "VideoFlash" / f"{clip}.flv", seconds=2.0, audio=False, seed=i)
        if frames:
            write_frames(root / "Image-01-FPS" / clip, n=2, seed=i)
        rows.append(f"{clip},{label}\r\n")
    (root / "train.csv").write_bytes("".join(rows[n_test:]).encode())
    (root / "test.csv").write_bytes("".join(rows[:n_test]).encode())
    return root


KS_CLIPS = [("--4-0ihtnBU_000058_000068", 4), ("-7aeB7vFtB4_37", 16), ("a_b-c_000001_000011", 30),
            ("xYz_9", 0)]


def make_kinetics(root: Path, *, video: bool = True) -> Path:
    """Kinetics-Sounds layout: video/<id>.mp4 (AAC audio) or audio/*.wav + Image-01-FPS/, CRLF lists."""
    for i, (clip, _) in enumerate(KS_CLIPS):
        if video:
            write_video(root / "video" / f"{clip}.mp4", seconds=2.0, rate=16000, seed=i)
        else:
            write_wav(root / "audio" / f"{clip}.wav", seconds=1.5, rate=22050, seed=i)
            write_frames(root / "Image-01-FPS" / clip, n=3, seed=i)
    rows = [f"{c},10,{y}\r\n" for c, y in KS_CLIPS]
    (root / "my_train.txt").write_text("".join(rows[1:]), newline="")
    (root / "my_test.txt").write_text(rows[0], newline="")
    return root


VGG_ROWS = [("abc-_12", 30, "dog barking", "train"), ("Q_9x", 0, "male speech, man speaking", "train"),
            ("zz-top", 100, "dog barking", "train"), ("k_l", 5, "playing piano", "test")]


def make_vggsound(root: Path) -> Path:
    lines = []
    for i, (yid, start, label, split) in enumerate(VGG_ROWS):
        clip = f"{yid}_{start:06d}"
        write_wav(root / "audio" / f"{clip}.wav", seconds=1.0, rate=16000, seed=i)
        write_frames(root / "Image-01-FPS" / clip, n=4, seed=i)
        lab = f'"{label}"' if "," in label else label
        lines.append(f"{yid},{start},{lab},{split}\n")
    (root / "vggsound.csv").write_text("".join(lines))
    return root


AVE_ROWS = [("Church bell", "RUhOCu3LNXM", "train"), ("Male speech, man speaking", "MBrHGTtsOF8", "train"),
            ("Dog", "-7ekJXl0Jx0", "train"), ("Church bell", "aaaBBB_cc1", "val"), ("Dog", "zzzY-1", "test")]


def make_ave(root: Path, *, video: bool = True) -> Path:
    ann = ["Category&VideoID&Quality&StartTime&EndTime\r\n"]
    sets = {"train": [], "val": [], "test": []}
    for i, (cat, vid, split) in enumerate(AVE_ROWS):
        if video:
            write_video(root / "video" / f"{vid}.mp4", seconds=2.0, rate=22050, seed=i)
        else:
            write_wav(root / "audio" / f"{vid}.wav", seconds=1.0, rate=22050, seed=i)
            write_frames(root / "Image-01-FPS" / vid, n=3, seed=i)
        row = f"{cat}&{vid}&good&0&10\r\n"
        ann.append(row)
        sets[split].append(row)
    (root / "Annotations.txt").write_text("".join(ann), newline="")
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        (root / name).write_text("".join(sets[split]), newline="")
    return root
