"""AVE, the Audio-Visual Event dataset (Tian et al., ECCV 2018), as used by OGM-GE.

Extracted layout (``root``)::

    audio/<VideoID>.wav             audio of the 10 s video (any rate; resampled to 22,050 Hz)
    Image-01-FPS/<VideoID>/*.jpg    frames at 1 fps (or video/<VideoID>.mp4, decoded)
    Annotations.txt                 header row, then ``Category&VideoID&Quality&StartTime&EndTime``
    trainSet.txt, valSet.txt, testSet.txt   the same rows (a header row is tolerated)

Classes: the 28 categories of ``Annotations.txt``, sorted. The official ``valSet.txt`` is the
validation split (no carving). Audio: CREMA-D's pipeline on the 10 s clip (22,050 Hz, tiled to
10 s, STFT 512/353, log) -> (1, 257, 625); visual: 3 frames.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ..audio import cremad_spectrogram
from ..errors import DataError, check_on_error
from .dataset import PaperDataset, make_dataset
from .spec import PaperSpec
from .splits import (
    ParsedSplit,
    Record,
    bad_row,
    choose_split,
    label_problem,
    read_rows,
    resolve_split_file,
)

SPEC = PaperSpec(
    name="ave",
    audio_dir="audio",
    video_dir="video",
    video_ext=".mp4",
    split_files={"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt",
                 "annotations": "Annotations.txt"},
    audio_feature=partial(cremad_spectrogram, seconds=10.0),
    cached_audio="spectrogram",
    audio_shape=(1, 257, 625),
    num_frames=3,
)


def read_list(path: str | os.PathLike) -> list[tuple[int, str, str]]:
    """``(line, category, video_id)`` rows of an AVE list (header row skipped)."""
    out = []
    for lineno, fields in read_rows(path, "&"):
        if fields[0] == "Category":
            continue
        if len(fields) != 5 or not fields[0] or not fields[1]:
            raise bad_row(path, lineno, f"expected 'Category&VideoID&Quality&StartTime&EndTime', got {fields!r}")
        out.append((lineno, fields[0], fields[1]))
    return out


def class_names_of(annotations: str | os.PathLike) -> list[str]:
    """The sorted categories of ``Annotations.txt``."""
    return sorted({cat for _, cat, _ in read_list(annotations)})


def parse_split(path, *, class_names, on_error: str = "raise") -> ParsedSplit:
    check_on_error(on_error)
    index = {n: i for i, n in enumerate(class_names)}
    out = ParsedSplit([])
    for lineno, cat, vid in read_list(path):
        if cat not in index:
            label_problem(f"{path}:{lineno} ({vid})", f"category {cat!r} not in Annotations.txt",
                          on_error, out.skipped)
            continue
        out.records.append(Record(vid, index[cat]))
    return out


def _classes(root: Path, split_file) -> list[str]:
    for cand in ([Path(split_file).parent / "Annotations.txt"] if split_file else []) + [
        root / "splits" / "Annotations.txt", root / "Annotations.txt",
    ]:
        if cand.is_file():
            return class_names_of(cand)
    raise DataError(root / "Annotations.txt", "missing", "ave: Annotations.txt not found (class map)")


def all_records(root: Path, split_file=None, *, on_error: str = "raise") -> ParsedSplit:
    names = _classes(root, split_file)
    out = ParsedSplit([])
    seen: set[str] = set()
    for which in ("train", "val", "test"):
        p = parse_split(resolve_split_file(SPEC, root, which, None), class_names=names, on_error=on_error)
        out.records += [r for r in p.records if r.clip not in seen]
        seen.update(r.clip for r in p.records)
        out.skipped += p.skipped
    return out


def load(
    root: str | os.PathLike, *, split: str, split_file=None, val_fraction: float = 0.1, seed: int = 0,
    on_error: str = "raise", train: bool | None = None, **kwargs,
) -> PaperDataset:
    """An AVE split (see :func:`ogmge.data.paper.load_paper_dataset`); ``val_fraction`` is unused.

    ``split_file`` replaces the train (or test) list; for ``split="val"`` it is taken as the
    training list and ``valSet.txt`` is read beside it (else from ``root``).
    """
    root = Path(root)
    check_on_error(on_error)
    names = _classes(root, split_file)

    def from_file(which):
        f = None
        if split_file and which == split == "val":  # split_file names the training list
            sibling = Path(split_file).parent / SPEC.split_files["val"]
            f = sibling if sibling.is_file() else None
        elif split_file and which == split:
            f = split_file
        return parse_split(resolve_split_file(SPEC, root, which, f), class_names=names, on_error=on_error)

    parsed = choose_split(split, lambda: from_file("train"), lambda: from_file("test"),
                          val_fraction=val_fraction, seed=seed, val_records=lambda: from_file("val"))
    return make_dataset(SPEC, root, parsed, split=split, class_names=names, train=train,
                        on_error=on_error, seed=seed, **kwargs)
