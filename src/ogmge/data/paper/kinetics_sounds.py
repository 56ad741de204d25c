"""Kinetics-Sounds (Arandjelovic & Zisserman, 2017), as used by OGM-GE / BalanceBenchmark.

Extracted layout (``root``)::

    audio/<id>.wav                  audio track (any rate; resampled to 16 kHz)
    Image-01-FPS/<id>/*.jpg         frames at 1 fps (or video/<id>.mp4, decoded)
    my_train.txt, my_test.txt       official split, rows ``ID,10,LABEL`` (CRLF tolerated)

IDs are ``youtubeid_start_end`` or ``youtubeid_N`` and may contain ``_`` and ``-``; labels are
integers 0..30 (no names). Audio: 128-bin Kaldi log-mel fbank, 10 ms shift, 1,024 frames,
normalised -> (1, 128, 1024); visual: 3 frames.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..audio import kinetics_fbank
from ..errors import check_on_error
from .dataset import PaperDataset, make_dataset
from .spec import PaperSpec
from .splits import (
    ParsedSplit,
    Record,
    bad_row,
    choose_split,
    label_problem,
    official_file_reader,
    pooled,
    read_rows,
    resolve_split_file,
)

NUM_CLASSES = 31
CLASS_NAMES = tuple(str(i) for i in range(NUM_CLASSES))

SPEC = PaperSpec(
    name="kinetics_sounds",
    audio_dir="audio",
    video_dir="video",
    video_ext=".mp4",
    split_files={"train": "my_train.txt", "test": "my_test.txt"},
    audio_feature=kinetics_fbank,
    cached_audio="spectrogram",
    audio_shape=(1, 128, 1024),
    num_frames=3,
)


def parse_split(path: str | os.PathLike, *, on_error: str = "raise") -> ParsedSplit:
    """Rows ``ID,10,LABEL`` of an official Kinetics-Sounds split file -> records."""
    check_on_error(on_error)
    out = ParsedSplit([])
    for lineno, fields in read_rows(path, ","):
        if len(fields) != 3 or not fields[0]:
            raise bad_row(path, lineno, f"expected 'ID,10,LABEL', got {','.join(fields)!r}")
        clip, _, label = fields
        try:
            value = int(label)
        except ValueError:
            value = -1
        if not 0 <= value < NUM_CLASSES:
            label_problem(f"{path}:{lineno} ({clip})", f"label {label!r} not an integer in 0..30",
                          on_error, out.skipped)
            continue
        out.records.append(Record(clip, value))
    return out


def all_records(root: Path, split_file=None, *, on_error: str = "raise") -> ParsedSplit:
    return pooled([parse_split(resolve_split_file(SPEC, root, which, None), on_error=on_error)
                   for which in ("train", "test")])


def load(
    root: str | os.PathLike, *, split: str, split_file=None, val_fraction: float = 0.1, seed: int = 0,
    on_error: str = "raise", train: bool | None = None, **kwargs,
) -> PaperDataset:
    """A Kinetics-Sounds split (see :func:`ogmge.data.paper.load_paper_dataset`)."""
    root = Path(root)
    check_on_error(on_error)
    from_file = official_file_reader(SPEC, root, split, split_file, parse_split, on_error=on_error)

    parsed = choose_split(split, lambda: from_file("train"), lambda: from_file("test"),
                          val_fraction=val_fraction, seed=seed)
    return make_dataset(SPEC, root, parsed, split=split, class_names=CLASS_NAMES, train=train,
                        on_error=on_error, seed=seed, **kwargs)
