"""VGGSound (Chen et al., ICASSP 2020), as used by OGM-GE.

Extracted layout (``root``)::

    audio/<youtube_id>_<start:06d>.wav          audio track (any rate; resampled to 16 kHz)
    Image-01-FPS/<youtube_id>_<start:06d>/*.jpg frames at 1 fps (or video/<clip>.mp4, decoded)
    vggsound.csv                                no header; rows ``youtube_id,start_seconds,label_text,train|test``

Classes: the label texts of the csv, sorted (index = position). Audio: 16 kHz tiled to 10 s
(cached as a waveform), a 5 s crop (random in training, centred in evaluation), STFT 256/128,
log -> (1, 129, 626); visual: 3 frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..audio import vggsound_spectrogram, vggsound_waveform
from ..errors import check_on_error
from .dataset import PaperDataset, make_dataset
from .spec import PaperSpec
from .splits import (
    ParsedSplit,
    Record,
    bad_row,
    choose_split,
    label_problem,
    pooled,
    read_rows,
    resolve_split_file,
)

SPEC = PaperSpec(
    name="vggsound",
    audio_dir="audio",
    video_dir="video",
    video_ext=".mp4",
    split_files={"train": "vggsound.csv", "test": "vggsound.csv"},
    audio_feature=vggsound_waveform,
    cached_audio="waveform",
    audio_shape=(1, 129, 626),
    num_frames=3,
)


def read_csv(path: str | os.PathLike) -> list[tuple[int, str, str, str]]:
    """``(line, clip, label_text, split)`` rows of ``vggsound.csv`` (clip = ``<id>_<start:06d>``)."""
    rows = []
    for lineno, fields in read_rows(path, ",", strip=False):
        if len(fields) < 4:
            raise bad_row(path, lineno, f"expected 'youtube_id,start_seconds,label,train|test', got {fields!r}")
        yid, start, split = fields[0].strip(), fields[1].strip(), fields[-1].strip()
        label = ",".join(fields[2:-1]).strip()
        try:
            start_s = int(float(start))
        except ValueError:
            raise bad_row(path, lineno, f"start_seconds {start!r} is not a number") from None
        if split not in ("train", "test") or not yid or not label:
            raise bad_row(path, lineno, f"expected split 'train' or 'test' and a label, got {fields!r}")
        rows.append((lineno, f"{yid}_{start_s:06d}", label, split))
    return rows


def class_names_of(path: str | os.PathLike) -> list[str]:
    """The sorted label texts of ``vggsound.csv``."""
    return sorted({label for _, _, label, _ in read_csv(path)})


def parse_split(path, which: str, *, class_names=None, on_error: str = "raise") -> ParsedSplit:
    """Records of ``which`` ("train"/"test") in ``vggsound.csv``; labels index ``class_names``
    (default: :func:`class_names_of` the same file)."""
    check_on_error(on_error)
    rows = read_csv(path)
    names = sorted({r[2] for r in rows}) if class_names is None else list(class_names)
    index = {n: i for i, n in enumerate(names)}
    out = ParsedSplit([])
    for lineno, clip, label, split in rows:
        if split != which:
            continue
        if label not in index:
            label_problem(f"{path}:{lineno} ({clip})", f"label {label!r} not in the class map",
                          on_error, out.skipped)
            continue
        out.records.append(Record(clip, index[label]))
    return out


class VGGSoundDataset(PaperDataset):
    """Cached audio is the 10 s waveform; the 5 s crop is drawn per sample."""

    def audio_into(self, clip: str, out: torch.Tensor, generator: torch.Generator) -> str | Path:
        waveform, path = self.reader.audio(clip)
        out.copy_(vggsound_spectrogram(np.array(waveform, dtype=np.float32), train=self.train, generator=generator))
        return path


def all_records(root: Path, split_file=None, *, on_error: str = "raise") -> ParsedSplit:
    path = resolve_split_file(SPEC, root, "train", split_file)
    return pooled([parse_split(path, which, on_error=on_error) for which in ("train", "test")])


def load(
    root: str | os.PathLike, *, split: str, split_file=None, val_fraction: float = 0.1, seed: int = 0,
    class_names=None, on_error: str = "raise", train: bool | None = None, **kwargs,
) -> PaperDataset:
    """A VGGSound split (see :func:`ogmge.data.paper.load_paper_dataset`)."""
    root = Path(root)
    check_on_error(on_error)
    path = resolve_split_file(SPEC, root, "train", split_file)
    names = class_names_of(path) if class_names is None else list(class_names)
    parsed = choose_split(
        split,
        lambda: parse_split(path, "train", class_names=names, on_error=on_error),
        lambda: parse_split(path, "test", class_names=names, on_error=on_error),
        val_fraction=val_fraction, seed=seed,
    )
    return make_dataset(SPEC, root, parsed, split=split, class_names=names, train=train, on_error=on_error, seed=seed,
                        dataset_class=VGGSoundDataset, **kwargs)
