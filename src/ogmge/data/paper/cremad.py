"""CREMA-D (Cao et al., 2014), as used by OGM-GE (Peng et al., CVPR 2022).

Extracted layout (``root``)::

    AudioWAV/<clip>.wav             16 kHz WAV (e.g. 1001_DFA_ANG_XX.wav)
    Image-01-FPS/<clip>/*.jpg       frames at 1 fps (or VideoFlash/<clip>.flv, decoded)
    train.csv, test.csv             official split, rows ``clip,LABEL`` (CRLF tolerated)

Classes NEU HAP SAD FEA DIS ANG (indices 0..5). Audio: 22,050 Hz, tiled to 3 s, STFT 512/353,
log -> (1, 257, 188); visual: 1 frame. ``speaker_independent=True`` pools both official files
and sends a seeded ``test_fraction`` of the actors (first field of the clip name) to test.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...validation import check_number
from ..audio import cremad_spectrogram
from ..errors import check_on_error
from .dataset import PaperDataset, make_dataset
from .spec import PaperSpec
from .splits import (
    ParsedSplit,
    Record,
    bad_row,
    carve_validation,
    choose_split,
    label_problem,
    official_file_reader,
    pooled,
    read_rows,
    resolve_split_file,
)

CLASS_NAMES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")

SPEC = PaperSpec(
    name="cremad",
    audio_dir="AudioWAV",
    video_dir="VideoFlash",
    video_ext=".flv",
    split_files={"train": "train.csv", "test": "test.csv"},
    audio_feature=cremad_spectrogram,
    cached_audio="spectrogram",
    audio_shape=(1, 257, 188),
    num_frames=1,
    expected_rate=16000,
)


def actor(clip: str) -> str:
    """The speaker of a CREMA-D clip: the first ``_`` field of its name."""
    return clip.split("_", 1)[0]


def parse_split(path: str | os.PathLike, *, on_error: str = "raise") -> ParsedSplit:
    """Rows ``clip,LABEL`` of an official CREMA-D split file -> records (label index, actor)."""
    check_on_error(on_error)
    out = ParsedSplit([])
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    for lineno, fields in read_rows(path, ","):
        if len(fields) != 2 or not fields[0]:
            raise bad_row(path, lineno, f"expected 'clip,LABEL', got {','.join(fields)!r}")
        clip, label = fields
        if label not in index:
            label_problem(f"{path}:{lineno} ({clip})", f"label {label!r} not in {list(CLASS_NAMES)}",
                          on_error, out.skipped)
            continue
        out.records.append(Record(clip, index[label], actor(clip)))
    return out


def all_records(root: Path, split_file=None, *, on_error: str = "raise") -> ParsedSplit:
    """Every clip of both official files (for ``prepare``)."""
    return pooled([parse_split(resolve_split_file(SPEC, root, which, None if which != "train" else split_file),
                               on_error=on_error) for which in ("train", "test")])


def load(
    root: str | os.PathLike, *, split: str, split_file=None, val_fraction: float = 0.1, seed: int = 0,
    speaker_independent: bool = False, test_fraction: float = 0.1, on_error: str = "raise",
    train: bool | None = None, **kwargs,
) -> PaperDataset:
    """A CREMA-D split (see :func:`ogmge.data.paper.load_paper_dataset`)."""
    root = Path(root)
    check_on_error(on_error)
    from_file = official_file_reader(SPEC, root, split, split_file, parse_split, on_error=on_error)

    if speaker_independent:
        pool = all_records(root, on_error=on_error)
        check_number("test_fraction", test_fraction, lo=0, hi=1, lo_open=True, hi_open=True)
        tr, te = carve_validation(pool.records, fraction=test_fraction, seed=seed, by_group=True,
                                  field="test_fraction")
        if split == "test":
            parsed = ParsedSplit(te, pool.skipped)
        else:
            a, v = carve_validation(tr, fraction=val_fraction, seed=seed, by_group=True)
            parsed = ParsedSplit(a if split == "train" else v, pool.skipped)
    else:
        parsed = choose_split(split, lambda: from_file("train"), lambda: from_file("test"),
                              val_fraction=val_fraction, seed=seed)
    return make_dataset(SPEC, root, parsed, split=split, class_names=CLASS_NAMES, train=train,
                        on_error=on_error, seed=seed, **kwargs)
