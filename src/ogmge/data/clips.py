"""Your own clips: a folder of class subfolders or a CSV list of videos -> a ``prepare`` cache.

Sources (:func:`list_clips`):

* a folder ``DIR/<class>/<clip>.<ext>`` (clips may sit deeper, ``DIR/<class>/<sub>/<clip>.<ext>``):
  classes are the folder names, indexed in sorted order; only files whose extension is in
  :data:`VIDEO_EXTENSIONS` are clips; hidden files and folders (name starting with ``.``),
  other extensions and files directly in ``DIR`` are ignored and counted.
* a CSV file with a header: columns ``path`` and ``label``, optionally ``split`` (``train``,
  ``val``, ``test``) and ``group`` (speaker, subject, source video); paths relative to the
  CSV's folder (or absolute); classes are the labels, indexed in sorted order.

A clip's id -- its folder name in the cache -- is its path relative to ``DIR`` (or to the CSV's
folder) without the extension, with ``/`` replaced by ``__`` (``ANG/take1.mp4`` -> ``ANG__take1``),
so the same files listed either way get the same ids.

Per clip (:func:`decode_clip`, PyAV): the *first* video stream and the *first* audio stream
are decoded in one pass. Audio: channels averaged to mono, resampled to ``sample_rate``
(22,050 Hz), the first ``seconds`` (3 s) kept -- a shorter clip is tiled -- clipped to
[-1, 1], ``log(|STFT| + 1e-7)`` with ``n_fft`` 512 and ``hop_length`` 353 -> float32
``(1, n_fft // 2 + 1, 1 + round(seconds * sample_rate) // hop_length)`` = (1, 257, 188): the
CREMA-D pipeline. Frames: the first frame at or after each ``k / fps`` seconds from the first
frame (``fps`` 1), at most ``max_frames`` (30) per clip, i.e. the start of a long clip; turned
upright by the stream's rotation metadata (display matrix / ``rotate`` tag; multiples of 90
degrees, flips ignored); resized so the shorter side is 256; uint8 ``(N, H, W, 3)``.

A clip is refused (:class:`~ogmge.data.errors.DataError`; skipped and listed with
``on_error="skip"``) when its file is missing or empty (``missing``, ``empty``), it cannot be
decoded (``undecodable``) or stops early (``truncated``), it has no video or no audio stream
(``no_video``, ``no_audio``), or its audio or video lasts less than ``min_seconds``
(0.5 s; ``too_short``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath

import numpy as np
import torch

from .audio import log_spectrogram, resample, tile_to
from .errors import DataError, check_on_error
from .paper.cache import CACHE_FORMAT, CACHE_VERSION
from .paper.spec import FRAMES_DIR
from .paper.splits import SPLITS
from .prepare import (
    SHORTER_SIDE,
    PrepareReport,
    _atomic_write_text,
    record_result,
    remove_stale,
    run_jobs,
    write_clip,
    write_report,
)
from .video import TRUNCATION_SLACK_S, _check_file, resize_shorter

DATASET = "clips"
#: Extensions (lower-cased) taken as clips when scanning a folder.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts",
                    ".3gp", ".wmv", ".ogv")
#: The clip list a ``prepare clips`` cache keeps (in ``CACHE/splits/``).
LIST_FILE = "clips.csv"
#: ``manifest.json`` key saying over which clips the splits are carved: ``"prepared"`` (the
#: listed clips less those ``prepare`` skipped). Caches written before it carve over every
#: listed clip and then drop the skipped ones (:mod:`ogmge.data.clips_dataset`).
SPLIT_OVER_KEY = "split_over"
SPLIT_OVER = "prepared"
CSV_COLUMNS = ("path", "label", "split", "group")
#: Why a file found while scanning a folder is not a clip.
IGNORED = ("hidden", "extension", "not_in_class_folder")
#: Extra audio (seconds) decoded past ``seconds`` so the resampling filter sees the same
#: samples as when the whole track is resampled.
AUDIO_MARGIN_S = 1.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ClipSettings:
    """How clips are turned into arrays (defaults: the CREMA-D pipeline, frames at 1 fps).

    ``fps``: frames per second kept; ``max_frames``: cap per clip; ``sample_rate`` (Hz),
    ``seconds`` (audio kept, tiled if shorter), ``n_fft``, ``hop_length``: the spectrogram;
    ``min_seconds``: shorter audio or video is refused (``too_short``).
    """

    fps: float = 1.0
    max_frames: int = 30
    sample_rate: int = 22050
    seconds: float = 3.0
    n_fft: int = 512
    hop_length: int = 353
    min_seconds: float = 0.5

    def __post_init__(self) -> None:
        for name in ("fps", "seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        v = self.min_seconds
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"min_seconds must be a number >= 0, got {v!r}")
        for name, lo in (("max_frames", 1), ("sample_rate", 1), ("n_fft", 2), ("hop_length", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.samples < self.n_fft:
            raise ValueError(f"seconds * sample_rate ({self.samples} samples) must be at least "
                             f"n_fft ({self.n_fft})")

    @property
    def samples(self) -> int:
        """Audio samples kept: ``round(seconds * sample_rate)``."""
        return int(round(self.seconds * self.sample_rate))

    @property
    def audio_shape(self) -> tuple[int, int, int]:
        return (1, self.n_fft // 2 + 1, 1 + self.samples // self.hop_length)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def clip_audio_features(waveform, sample_rate: int, settings: ClipSettings) -> torch.Tensor:
    """Mono float waveform at ``sample_rate`` -> the cached log spectrogram ``settings.audio_shape``:
    resampled, tiled/cropped to ``settings.seconds``, clipped to [-1, 1], STFT, log."""
    x = resample(torch.as_tensor(waveform, dtype=torch.float32), int(sample_rate), settings.sample_rate)
    x = tile_to(x, settings.samples).clamp(-1.0, 1.0)
    return log_spectrogram(x, n_fft=settings.n_fft, hop_length=settings.hop_length).unsqueeze(0).float()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ClipEntry:
    """One listed clip: its cache id, file, class name and optional split and group."""

    clip: str
    path: str
    label: str
    split: str | None = None
    group: str | None = None


@dataclass
class ClipListing:
    """The clips of a source, its classes (sorted) and what a folder scan ignored."""

    source: str
    kind: str                                   # "folder" or "csv"
    entries: list[ClipEntry]
    class_names: list[str]
    has_split: bool = False
    has_group: bool = False
    ignored: dict[str, list[str]] = field(default_factory=dict)   # reason -> paths

    @property
    def ignored_counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.ignored.items() if v}


def clip_id(relative: str | os.PathLike) -> str:
    """The cache id of a clip from its path relative to the source: the extension dropped,
    ``/`` -> ``__``, ``.``/``..`` parts dropped and leading dots of a part replaced by ``_``."""
    p = PurePath(os.fspath(relative).replace("\\", "/"))
    parts = [q for q in p.with_suffix("").parts if q not in ("", ".", "..", "/", p.anchor)]
    parts = ["_" * (len(q) - len(q.lstrip("."))) + q.lstrip(".") for q in parts]
    if not parts:
        raise ValueError(f"cannot make a clip id from the path {os.fspath(relative)!r}")
    return "__".join(parts)


def _check_unique(entries: list[ClipEntry], where) -> None:
    seen: dict[str, str] = {}
    for e in entries:
        if e.clip in seen:
            raise ValueError(f"{where}: {seen[e.clip]!r} and {e.path!r} give the same clip id {e.clip!r} "
                             "(same name with another extension?); rename one")
        seen[e.clip] = e.path


def list_folder(root: str | os.PathLike) -> ClipListing:
    """The clips of ``root/<class>/**/<clip>.<ext>`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"clips folder not found: {root}")
    ignored: dict[str, list[str]] = {k: [] for k in IGNORED}
    entries: list[ClipEntry] = []
    for name in sorted(os.listdir(root)):
        path = root / name
        if name.startswith("."):
            ignored["hidden"].append(str(path))
        elif not path.is_dir():
            ignored["not_in_class_folder"].append(str(path))
        else:
            for dirpath, dirnames, filenames in os.walk(path):
                hidden = sorted(d for d in dirnames if d.startswith("."))
                ignored["hidden"] += [os.path.join(dirpath, d) for d in hidden]
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    full = os.path.join(dirpath, f)
                    if f.startswith("."):
                        ignored["hidden"].append(full)
                    elif os.path.splitext(f)[1].lower() not in VIDEO_EXTENSIONS:
                        ignored["extension"].append(full)
                    else:
                        rel = os.path.relpath(full, root)
                        entries.append(ClipEntry(clip_id(rel), os.path.abspath(full), name))
    if not entries:
        raise ValueError(f"{root}: no clip found; expected {root}/<class>/<clip>.<ext> with an extension "
                         f"among {' '.join(VIDEO_EXTENSIONS)}")
    _check_unique(entries, root)
    classes = sorted({e.label for e in entries})
    return ClipListing(str(root), "folder", entries, classes, ignored=ignored)


def read_clip_csv(path: str | os.PathLike) -> ClipListing:
    """The clips listed in a CSV (header ``path,label[,split][,group]``; see the module docstring).
    Bad rows raise ``ValueError`` naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip list not found: {path}")
    base = path.parent
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    numbered = [(i, r) for i, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise ValueError(f"{path}: empty; expected a header 'path,label' and one row per clip")
    head_line, header = numbered[0]
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    missing = [h for h in ("path", "label") if h not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise ValueError(f"{path}:{head_line}: header {','.join(header)!r} must name the columns 'path' and "
                         f"'label' and optionally 'split' and 'group', each once"
                         + (f" (unknown: {unknown})" if unknown else ""))
    col = {h: i for i, h in enumerate(header)}
    entries: list[ClipEntry] = []
    seen_paths: dict[str, int] = {}
    for lineno, row in numbered[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
        value = {h: row[i].strip() for h, i in col.items()}
        for h in header:
            if not value[h]:
                raise ValueError(f"{path}:{lineno}: empty {h!r}")
        split = value.get("split")
        if split is not None and split not in SPLITS:
            raise ValueError(f"{path}:{lineno}: split must be one of {list(SPLITS)}, got {split!r}")
        rel = value["path"]
        full = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(os.path.abspath(base), rel))
        if full in seen_paths:
            raise ValueError(f"{path}:{lineno}: {rel!r} is listed twice (also on line {seen_paths[full]})")
        seen_paths[full] = lineno
        ident = clip_id(os.path.relpath(full, os.path.abspath(base)) if not os.path.isabs(rel) else rel)
        entries.append(ClipEntry(ident, full, value["label"], split, value.get("group")))
    if not entries:
        raise ValueError(f"{path}: no clip listed under the header")
    _check_unique(entries, path)
    classes = sorted({e.label for e in entries})
    return ClipListing(str(path), "csv", entries, classes, has_split="split" in col, has_group="group" in col)


def list_clips(source: str | os.PathLike) -> ClipListing:
    """A folder of class subfolders, or a ``.csv`` file (see the module docstring)."""
    p = Path(source)
    if p.is_dir():
        return list_folder(p)
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise ValueError(f"source {p} must be a folder of class subfolders or a .csv file")
        return read_clip_csv(p)
    raise FileNotFoundError(f"source not found: {p} (a folder of class subfolders or a .csv file)")


# --------------------------------------------------------------------------- decoding


@dataclass
class ClipArrays:
    """What :func:`decode_clip` returns: ``audio (1, F, T)`` float32, ``frames (N, H, W, 3)`` uint8."""

    audio: np.ndarray
    frames: np.ndarray


def _import_av():
    try:
        import av
    except ImportError as exc:  # depends on the install
        raise ImportError('preparing clips needs PyAV, the "video" extra: pip install "ogmge[video]"') from exc
    return av


def upright(image: np.ndarray, rotation: float | None) -> np.ndarray:
    """``image`` turned by ``rotation`` degrees counter-clockwise (the display rotation PyAV
    reports as ``VideoFrame.rotation``), rounded to a multiple of 90."""
    if not rotation:
        return image
    k = int(round(float(rotation) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _stream_rotation(stream) -> float:
    """Rotation from a stream's legacy ``rotate`` tag (clockwise degrees) for PyAV without
    ``VideoFrame.rotation``; returned counter-clockwise."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return -float(tag) if tag is not None else 0.0
    except ValueError:
        return 0.0


def decode_clip(path: str | os.PathLike, settings: ClipSettings = ClipSettings()) -> ClipArrays:
    """The cached arrays of one clip (see the module docstring); bad clips raise
    :class:`DataError` naming the file, with kind ``missing``, ``empty``, ``undecodable``,
    ``truncated``, ``no_video``, ``no_audio`` or ``too_short``."""
    av = _import_av()
    p = os.fspath(path)
    _check_file(p, "clip")
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    need_audio = max(settings.seconds + AUDIO_MARGIN_S, settings.min_seconds)
    try:
        with av.open(p) as container:
            if not container.streams.video:
                raise DataError(p, "no_video", "no video stream")
            if not container.streams.audio:
                raise DataError(p, "no_audio", "no audio stream")
            vstream, astream = container.streams.video[0], container.streams.audio[0]
            declared = container.duration / 1e6 if container.duration else None
            legacy_rotation = None if hasattr(av.VideoFrame, "rotation") else _stream_rotation(vstream)
            rate_v = float(vstream.average_rate) if vstream.average_rate else 0.0
            t0 = t_last = None
            resampler = None
            audio_rate = audio_n = 0
            video_done = audio_done = stopped = False
            for frame in container.decode(vstream, astream):
                if isinstance(frame, av.AudioFrame):
                    if audio_done:
                        continue
                    if resampler is None:  # planar float, the stream's own rate and layout
                        audio_rate = int(frame.sample_rate)
                        resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=audio_rate)
                    for out in resampler.resample(frame):
                        a = out.to_ndarray()
                        chunks.append(a.mean(axis=0, dtype=np.float32) if a.shape[0] > 1 else a[0])
                        audio_n += a.shape[1]
                    audio_done = audio_n >= need_audio * audio_rate
                else:
                    if video_done:
                        continue
                    t = frame.time if frame.time is not None else (len(frames) / settings.fps)
                    t0 = t if t0 is None else t0
                    t_last = t if t_last is None else max(t_last, t)
                    if len(frames) < settings.max_frames and t - t0 + 1e-6 >= len(frames) / settings.fps:
                        rot = legacy_rotation if legacy_rotation is not None else frame.rotation
                        img = upright(frame.to_ndarray(format="rgb24"), rot)
                        frames.append(resize_shorter(img, SHORTER_SIDE))
                    video_done = len(frames) >= settings.max_frames and t_last - t0 >= settings.min_seconds
                if video_done and audio_done:
                    stopped = True
                    break
            if resampler is not None and not stopped:
                for out in resampler.resample(None):
                    a = out.to_ndarray()
                    chunks.append(a.mean(axis=0, dtype=np.float32) if a.shape[0] > 1 else a[0])
    except DataError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...), EOF, codec errors
        raise DataError(p, "undecodable", f"cannot decode ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise DataError(p, "undecodable", "no video frame could be decoded")
    assert t0 is not None and t_last is not None  # set with the first frame
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        raise DataError(p, "no_audio", "the audio stream holds no sample")
    video_s = t_last - t0 + (1.0 / rate_v if rate_v > 0 else 0.0)
    audio_s = wave.size / audio_rate
    if not stopped and declared:
        end = max(t_last + (1.0 / rate_v if rate_v > 0 else 0.0), audio_s)
        if end + TRUNCATION_SLACK_S < declared:
            raise DataError(p, "truncated", f"truncated: the streams end at {end:.2f} s of a declared {declared:.2f} s")
    if min(video_s, audio_s) < settings.min_seconds:
        raise DataError(p, "too_short", f"shorter than min_seconds={settings.min_seconds:g} s "
                        f"(video {video_s:.2f} s, audio {audio_s:.2f} s)")
    if not np.isfinite(wave).all():
        raise DataError(p, "undecodable", "audio holds NaN/inf")
    size = frames[0].shape[:2]
    if any(f.shape[:2] != size for f in frames):  # the resolution changed mid-stream
        from PIL import Image

        frames = [f if f.shape[:2] == size else
                  np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.Resampling.BILINEAR)) for f in frames]
    keep = min(wave.size, int(math.ceil(need_audio * audio_rate)))
    audio = clip_audio_features(wave[:keep], audio_rate, settings).numpy()
    return ClipArrays(np.ascontiguousarray(audio, dtype=np.float32), np.stack(frames).astype(np.uint8, copy=False))


# --------------------------------------------------------------------------- prepare


@dataclass
class ClipsPrepareReport(PrepareReport):
    """:class:`~ogmge.data.prepare.PrepareReport` plus the classes and what a folder scan ignored."""

    class_names: list[str] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = super().summary() + f"; {len(self.class_names)} classes"
        if self.ignored:
            parts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self.ignored.items()))
            text += f"; ignored {sum(self.ignored.values())} file(s) ({parts})"
        return text


def prepare_one(path: str, out: str, clip: str, settings: ClipSettings):
    """Write one clip into ``out/clips/<clip>``; ``(clip, None, None, None)`` or
    ``(clip, path, kind, reason)`` of the :class:`DataError` that stopped it."""
    final = Path(out) / "clips" / clip
    if final.is_dir():
        return clip, None, None, None
    try:
        arrays = decode_clip(path, settings)
    except DataError as exc:
        return clip, exc.path, exc.kind, exc.reason
    write_clip(final, {"audio": arrays.audio, "frames": arrays.frames})
    return clip, None, None, None


def _manifest(settings: ClipSettings, listing: ClipListing) -> dict:
    return {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "dataset": DATASET,
        "audio": "spectrogram", "audio_shape": list(settings.audio_shape), "frames_dir": FRAMES_DIR,
        "shorter_side": SHORTER_SIDE, "settings": settings.as_dict(),
        "class_names": list(listing.class_names), "has_split": listing.has_split, "has_group": listing.has_group,
        SPLIT_OVER_KEY: SPLIT_OVER,
    }


def _check_existing(out: Path, settings: ClipSettings) -> None:
    """A cache being resumed must have been prepared with the same settings."""
    path = out / "manifest.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc}); use another --out") from None
    if old.get("dataset") != DATASET:
        raise ValueError(f"{out} holds a cache of {old.get('dataset')!r}, not of clips; use another --out")
    before = old.get("settings", {})
    changed = {k: (before.get(k), v) for k, v in settings.as_dict().items() if before.get(k) != v}
    if changed:
        what = ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in sorted(changed.items()))
        raise ValueError(f"{out} was prepared with {what}; resume with the same options or use another --out")


def write_list(out: Path, listing: ClipListing) -> None:
    """``splits/clips.csv``: ``clip,label,split,group,path`` per listed clip (empty when not given)."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["clip", "label", "split", "group", "path"])
    for e in listing.entries:
        w.writerow([e.clip, e.label, e.split or "", e.group or "", e.path])
    _atomic_write_text(out / "splits" / LIST_FILE, buf.getvalue())


def prepare_clips(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    settings: ClipSettings | None = None,
    workers: int = 1,
    on_error: str = "raise",
    progress: bool = True,
) -> ClipsPrepareReport:
    """Prepare every clip of ``source`` (folder or CSV, see :func:`list_clips`) into the cache ``out``.

    The cache has the paper datasets' layout and guarantees (:mod:`ogmge.data.prepare`): each
    clip written atomically, a re-run resumes (with the same ``settings``, else ``ValueError``),
    ``workers`` processes, a progress bar; bad clips raise :class:`DataError` naming the file
    (``on_error="raise"``) or are skipped and listed in ``skipped.txt`` and the report.
    Also writes ``splits/clips.csv`` (the listing) and the class names in ``manifest.json``.
    """
    settings = ClipSettings() if settings is None else settings
    if not isinstance(settings, ClipSettings):
        raise TypeError(f"settings must be a ClipSettings, got {type(settings).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    check_on_error(on_error)
    _import_av()
    t0 = time.perf_counter()
    listing = list_clips(source)
    out = Path(out)
    _check_existing(out, settings)
    report = ClipsPrepareReport(DATASET, class_names=list(listing.class_names), ignored=listing.ignored_counts)
    report.listed = len(listing.entries)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "splits").mkdir(exist_ok=True)
    write_list(out, listing)
    _atomic_write_text(out / "manifest.json", json.dumps(_manifest(settings, listing), indent=1, sort_keys=True) + "\n")
    remove_stale(out / "clips")

    todo = [e for e in listing.entries if not (out / "clips" / e.clip).is_dir()]
    report.already_done = report.listed - len(todo)
    args = [(e.path, str(out), e.clip, settings) for e in todo]
    run_jobs(prepare_one, args, workers=workers, on_result=record_result(report, on_error), desc="prepare clips", progress=progress)
    order = {e.clip: i for i, e in enumerate(listing.entries)}
    report.skipped.sort(key=lambda s: order.get(s[0], -1))
    report.seconds = time.perf_counter() - t0
    write_report(out, report)
    return report


__all__ = [
    "VIDEO_EXTENSIONS", "ClipArrays", "ClipEntry", "ClipListing", "ClipSettings", "ClipsPrepareReport",
    "clip_audio_features", "clip_id", "decode_clip", "list_clips", "list_folder", "prepare_clips",
    "read_clip_csv", "upright",
]
