"""Shared machinery of the paper dataset readers: split-file reading, frame selection, the
validation carve (on :mod:`ogmge.data.splitting`), the cache layout, and :class:`PaperDataset`.

Cache layout (written by :mod:`ogmge.data.prepare`)::

    CACHE/manifest.json             {"format": "ogmge-paper-cache", "dataset": ..., ...}
    CACHE/splits/<official files>   copies of the split files found in the source
    CACHE/clips/<clip>/audio.npy    float32 spectrogram (1, F, T), or waveform (L,) (VGGSound)
    CACHE/clips/<clip>/frames.npy   uint8 (N, H, W, 3), frames at 1 fps, shorter side 256
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ...contracts import ModalitySpec
from ...validation import check_choice, check_positive_int
from ..audio import check_finite, pcm16_to_float, read_wav
from ..collate import BufferedSamples, batch_buffers
from ..errors import DataError, check_on_error
from ..splitting import group_split, stratified_split
from ..transforms import (
    eval_transform,
    frames_to_tensor,
    random_resized_crop_box,
    resize_into,
    train_transform,
)
from ..video import decode_video, list_frame_files, read_image

CACHE_FORMAT = "ogmge-paper-cache"
CACHE_VERSION = 1
FRAMES_DIR = "Image-01-FPS"
SPLITS = ("train", "val", "test")
#: ``visual_dtype`` of :class:`PaperDataset`: uint8 frames (normalised by the model) or
#: float32 frames normalised with ImageNet mean/std in the dataset.
VISUAL_DTYPES = ("uint8", "float32")


@dataclass(frozen=True)
class Record:
    """One clip listed in a split file: its id, label index and group (CREMA-D actor)."""

    clip: str
    label: int
    group: str | None = None


@dataclass
class ParsedSplit:
    """Records of a split file plus the rows skipped (``(where, reason)``) under ``on_error="skip"``."""

    records: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PaperSpec:
    """What differs between the paper datasets."""

    name: str
    audio_dir: str                      # extracted layout: <root>/<audio_dir>/<clip>.wav
    video_dir: str                      # raw videos: <root>/<video_dir>/<clip><video_ext>
    video_ext: str
    split_files: dict[str, str]         # default file name per official split
    audio_feature: Callable             # (waveform float32, rate) -> cached audio array (torch)
    cached_audio: str                   # "spectrogram" or "waveform"
    audio_shape: tuple[int, ...]        # per-sample spectrogram shape (1, F, T) given to the model
    num_frames: int
    expected_rate: int | None = None    # required WAV sample rate (CREMA-D: 16 kHz)


# --------------------------------------------------------------------------- split files


def read_rows(path: str | os.PathLike, delimiter: str, *, strip: bool = True) -> list[tuple[int, list[str]]]:
    """Non-empty rows of a text table (CRLF/LF tolerant, BOM stripped) with 1-based line numbers;
    ``strip`` strips each field."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "missing", "split file not found")
    text = p.read_text(encoding="utf-8-sig")
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            fields = next(csv.reader([line], delimiter=delimiter)) if delimiter == "," else line.split(delimiter)
            rows.append((lineno, [f.strip() for f in fields] if strip else fields))
    return rows


def bad_row(path, lineno: int, message: str) -> ValueError:
    return ValueError(f"{path}:{lineno}: {message}")


def label_problem(where: str, message: str, on_error: str, skipped: list) -> None:
    """Raise a ``label`` :class:`DataError` or record it as skipped."""
    if on_error == "raise":
        raise DataError(where, "label", message)
    skipped.append((where, f"label: {message}"))


def check_clip_ids(records: Sequence[Record]) -> None:
    """Clip ids become file names: refuse path separators, ``.``/``..`` and hidden names."""
    bad = [r.clip for r in records if "/" in r.clip or "\\" in r.clip or r.clip.startswith(".")]
    if bad:
        raise ValueError(f"clip ids must be plain file names, got {bad[:5]}")


# --------------------------------------------------------------------------- splits


def carve_validation(
    records: Sequence[Record], *, fraction: float, seed: int, by_group: bool = False,
    field: str = "val_fraction",
) -> tuple[list[Record], list[Record]]:
    """Seeded split of ``records`` into ``(train, val)``, in their order, by
    :func:`ogmge.data.splitting.stratified_split` (by label) or, with ``by_group``,
    :func:`~ogmge.data.splitting.group_split` (whole groups, CREMA-D actors).
    ``fraction = 0`` gives ``(records, [])``."""
    records = list(records)
    if by_group:
        _, held = group_split([r.group for r in records], val_fraction=fraction, seed=seed,
                              allow_zero=True, field=field)
    else:
        _, held = stratified_split([r.label for r in records], val_fraction=fraction, seed=seed,
                                   allow_zero=True, field=field)
    val = set(held)
    return [r for i, r in enumerate(records) if i not in val], [records[i] for i in held]


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


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed, independent of DataLoader workers: mixes ``(seed, epoch, index)``."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


# --------------------------------------------------------------------------- the cache


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


# --------------------------------------------------------------------------- raw sources


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


# --------------------------------------------------------------------------- the dataset


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

    def frames(self, clip: str, num_frames: int, *, train: bool, generator: torch.Generator) -> torch.Tensor:
        layout = self.layout(clip)[1]
        idx = select_frames(layout.shape[0], num_frames, train=train, generator=generator)
        return frames_to_tensor(layout.rows(self.path(clip, "frames"), idx))


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

    def frames(self, clip: str, num_frames: int, *, train: bool, generator: torch.Generator) -> torch.Tensor:
        _, src = raw_sources(self.spec, self.root, clip)
        if src.is_dir():
            files = list_frame_files(src)
            idx = select_frames(len(files), num_frames, train=train, generator=generator)
            imgs = [read_image(files[i]) for i in idx]
        else:
            allf = decode_video(src, audio=False).frames
            idx = select_frames(len(allf), num_frames, train=train, generator=generator)
            imgs = [allf[i] for i in idx]
        if len({i.shape for i in imgs}) != 1:
            raise DataError(src, "shape", f"frames of different sizes {[i.shape for i in imgs]}")
        return frames_to_tensor(np.stack(imgs))


def open_reader(spec: PaperSpec, root: Path) -> CacheReader | RawReader:
    """The reader of ``root``: a cache when it holds ``manifest.json``, else the extracted layout."""
    return CacheReader(spec, root) if is_cache(root) else RawReader(spec, root)


class PaperDataset(Dataset):
    """A paper dataset split, read from the extracted layout or from a ``prepare`` cache.

    Samples: ``{"inputs": {"audio": (1, F, T) float32, "visual": (T_v, 3, S, S)}, "label": int}``;
    ``visual`` is uint8 (cropped/resized, not normalised) or float32 (ImageNet-normalised), as
    ``visual_dtype`` says: ``"uint8"``, ``"float32"`` or ``None`` (default: ``"uint8"`` from a
    cache, ``"float32"`` from the extracted layout). uint8 frames are 4x smaller to move between
    DataLoader workers; :class:`ogmge.models.VisualEncoder` normalises uint8 input itself, other
    encoders need ``visual_dtype="float32"`` (or :func:`ogmge.data.transforms.normalize`).

    Attributes: ``modalities``, ``num_classes``, ``class_names``, ``targets``, ``groups``
    (CREMA-D actors, else None), ``clips``, ``skipped`` (``(clip or file, reason)`` left out
    under ``on_error="skip"``), ``source`` (``"cache"`` or ``"raw"``), ``reader`` (the
    :class:`CacheReader` or :class:`RawReader` that reads its clips), ``visual_dtype``.

    Randomness (training frames, crops, flips, VGGSound audio crops) comes from a per-sample
    ``torch.Generator`` seeded from ``(seed, epoch, index)``, so it is identical whatever the
    number of DataLoader workers; call :meth:`set_epoch` every epoch to draw new augmentations.
    """

    def __init__(
        self,
        spec: PaperSpec,
        root: str | os.PathLike,
        records: Sequence[Record],
        *,
        split: str,
        class_names: Sequence[str],
        train: bool,
        num_frames: int | None = None,
        image_size: int = 224,
        seed: int = 0,
        on_error: str = "raise",
        skipped: Sequence[tuple[str, str]] = (),
        validate: bool = True,
        visual_dtype: str | None = None,
    ) -> None:
        self.spec = spec
        self.root = Path(root)
        self.split = split
        self.train = bool(train)
        self.on_error = check_on_error(on_error)
        nf = check_positive_int("num_frames", spec.num_frames if num_frames is None else num_frames)
        check_positive_int("image_size", image_size)
        self.num_frames, self.image_size = nf, image_size
        self.seed, self.epoch = int(seed), 0
        self.reader = open_reader(spec, self.root)
        self.source = self.reader.source
        if visual_dtype is None:
            visual_dtype = self.reader.default_visual_dtype
        check_choice("visual_dtype", visual_dtype, VISUAL_DTYPES, also=" or None")
        self.visual_dtype = visual_dtype
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.skipped: list[tuple[str, str]] = list(skipped)
        check_clip_ids(records)
        kept = []
        problems: list[DataError] = []
        for r in records:
            try:
                self.reader.check(r.clip, validate=validate)
                kept.append(r)
            except DataError as exc:
                problems.append(exc)
                self.skipped.append((r.clip, str(exc)))
        if problems and self.on_error == "raise":
            head = "; ".join(str(p) for p in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise DataError(problems[0].path, problems[0].kind,
                            f"{len(problems)} clip(s) of {spec.name} {split} unusable: {head}{more}")
        if self.skipped:
            warnings.warn(f"{spec.name} {split}: skipped {len(self.skipped)} clip(s); see dataset.skipped",
                          stacklevel=2)
        self.records = kept
        self.clips = [r.clip for r in kept]
        self.targets = [r.label for r in kept]
        groups = [r.group for r in kept]
        self.groups = groups if kept and all(g is not None for g in groups) else None
        self.modalities = {
            "audio": ModalitySpec("audio", "spectrogram", spec.audio_shape),
            "visual": ModalitySpec("visual", "video", (nf, 3, image_size, image_size)),
        }

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentations of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def generator_for(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))

    # subclasses with random audio override this
    def audio_input(self, cached: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        return torch.from_numpy(np.require(cached, np.float32, ["C", "W"]))

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """``[self[i] for i in indices]`` -- the DataLoader's batched fetch. The same samples, bit
        for bit (the draws of each index come from its own generator, whatever the batch). From a
        cache (spectrogram audio) they are written straight into :func:`~ogmge.data.collate.batch_buffers`
        (one shared-memory storage in a DataLoader worker): the audio read from its file into
        its row, only the crop's lines of the frames read, cropped and resized into theirs; they
        come back as :class:`~ogmge.data.collate.BufferedSamples`, which
        :func:`~ogmge.data.collate.collate_samples` turns into those buffers without copying."""
        indices = list(indices)
        if (not isinstance(self.reader, CacheReader) or not indices or self.spec.cached_audio != "spectrogram"
                or type(self).audio_input is not PaperDataset.audio_input):
            return [self[i] for i in indices]
        s = self.image_size
        vdtype = torch.float32 if self.visual_dtype == "float32" else torch.uint8
        bufs = batch_buffers(len(indices), {"audio": (self.spec.audio_shape, torch.float32),
                                            "visual": ((self.num_frames, 3, s, s), vdtype)})
        audio, visual = bufs["audio"], bufs["visual"]
        samples = []
        for k, index in enumerate(indices):
            r = self.records[index]
            g = self.generator_for(index)
            audio_layout, frames_layout = self.reader.layout(r.clip)
            a, v = audio[k], visual[k]
            path = self.reader.path(r.clip, "audio")
            audio_layout.read_into(path, a.numpy())
            check_finite(a, path, "audio features")
            self._frames_into(v, r, frames_layout, g)
            samples.append({"inputs": {"audio": a, "visual": v}, "label": r.label})
        return BufferedSamples(samples, bufs)

    def _frames_into(self, out: torch.Tensor, r: Record, layout: NpyLayout, g: torch.Generator) -> None:
        """The visual input of a cached clip, written into ``out``: the draws and values of
        :meth:`CacheReader.frames` + ``train_transform``/``eval_transform``, reading only the crop's lines."""
        n, height, width = layout.shape[:3]
        idx = select_frames(n, self.num_frames, train=self.train, generator=g)
        if self.train:
            top, left, h, w = random_resized_crop_box(height, width, generator=g)
            flip = float(torch.rand((), generator=g)) < 0.5
        else:
            top, left, h, w, flip = 0, 0, height, width, False
        assert isinstance(self.reader, CacheReader)  # only __getitems__'s cached path calls this
        lines = layout.rows(self.reader.path(r.clip, "frames"), idx, lines=(top, h))
        resize_into(out, frames_to_tensor(lines)[..., left:left + w], flip=flip)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        g = self.generator_for(index)
        cached, path = self.reader.audio(r.clip)
        audio = self.audio_input(cached, g)
        check_finite(audio, path, "audio features")
        frames = self.reader.frames(r.clip, self.num_frames, train=self.train, generator=g)
        norm = self.visual_dtype == "float32"
        if self.train:
            visual = train_transform(frames, self.image_size, generator=g, normalize=norm)
        else:
            visual = eval_transform(frames, self.image_size, normalize=norm)
        return {"inputs": {"audio": audio, "visual": visual}, "label": r.label}


def resolve_split_file(spec: PaperSpec, root: Path, which: str, split_file) -> Path:
    """The split file to read: ``split_file`` if given, else the default name in the cache's
    ``splits/`` folder or in ``root``."""
    if split_file is not None:
        return Path(split_file)
    name = spec.split_files[which]
    for cand in (root / "splits" / name, root / name):
        if cand.is_file():
            return cand
    raise DataError(root / name, "missing",
                    f"{spec.name}: split file {name!r} not found in {root} (pass split_file=...)")


def official_file_reader(
    spec: PaperSpec, root: Path, split: str, split_file, parse: Callable[..., ParsedSplit], **options,
) -> Callable[[str], ParsedSplit]:
    """``read(which)``: the records of the official ``which`` file, parsed by ``parse(path,
    **options)``; ``split_file`` replaces the file that ``split`` reads (the test list for
    ``"test"``, the training list otherwise)."""
    key = "test" if split == "test" else "train"

    def read(which: str) -> ParsedSplit:
        return parse(resolve_split_file(spec, root, which, split_file if which == key else None), **options)

    return read


def pooled(parts: Sequence[ParsedSplit]) -> ParsedSplit:
    """The records (in order) and skipped rows of several parsed split files together."""
    out = ParsedSplit([])
    for p in parts:
        out.records += p.records
        out.skipped += p.skipped
    return out


def make_dataset(
    spec: PaperSpec, root: Path, parsed: ParsedSplit, *, split: str, class_names: Sequence[str],
    train: bool | None, on_error: str, dataset_class: type[PaperDataset] = PaperDataset, **kwargs,
) -> PaperDataset:
    """The dataset of ``split`` over ``parsed``'s records; ``train`` (augmentation) defaults
    to ``split == "train"``."""
    return dataset_class(spec, root, parsed.records, split=split, class_names=class_names,
                         train=(split == "train") if train is None else train, on_error=on_error,
                         skipped=parsed.skipped, **kwargs)


def choose_split(
    split: str, train_records: Callable[[], ParsedSplit], test_records: Callable[[], ParsedSplit],
    *, val_fraction: float, seed: int, by_group: bool = False, val_records: Callable[[], ParsedSplit] | None = None,
) -> ParsedSplit:
    """Records of ``split`` in {"train", "val", "test"}: val carved from train unless the
    dataset has its own (``val_records``, AVE)."""
    check_choice("split", split, SPLITS)
    if split == "test":
        return test_records()
    if val_records is not None:
        return val_records() if split == "val" else train_records()
    parsed = train_records()
    train, val = carve_validation(parsed.records, fraction=val_fraction, seed=seed, by_group=by_group)
    return ParsedSplit(train if split == "train" else val, parsed.skipped)
