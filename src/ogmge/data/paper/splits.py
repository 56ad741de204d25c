"""Split files of the paper datasets: their rows, the records they list, the validation
carve (on :mod:`ogmge.data.splitting`) and the choice of a split's records."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...validation import check_choice
from ..errors import DataError
from ..splitting import group_split, stratified_split
from .spec import PaperSpec

SPLITS = ("train", "val", "test")


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
