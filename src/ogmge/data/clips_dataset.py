"""Reading a ``prepare clips`` cache: the splits and :class:`ClipsDataset`.

Splits, from the cache's ``splits/clips.csv`` (the listing of the source):

* with a ``split`` column: its ``train`` / ``val`` / ``test`` rows; when no row is ``val``,
  validation is carved from train as below (``val_fraction`` of it);
* without: a seeded ``test_fraction`` (default 0.2) of the clips is held out for test, then
  ``val_fraction`` (default 0.1) of the rest for validation -- whole groups when the CSV has a
  ``group`` column (speaker-independent, :func:`ogmge.data.splitting.group_split`), else
  stratified by class (:func:`ogmge.data.splitting.stratified_split`).

The carving uses ``split_seed`` (default 0), not the training seed, so runs with different
seeds (``ogmge compare``) share one test set. It is done over the clips that were prepared:
those ``prepare`` skipped (``skipped.txt``) take no share of any split (they are listed in the
training split's ``dataset.skipped``, or in their own split's with a ``split`` column). A split
asked for that comes out empty is refused with what to change (the fraction, more clips or
groups). A cache prepared before this rule (no ``split_over`` in its manifest) keeps the
splits it gave, carved over every listed clip, and says to re-run ``prepare clips`` when the
skipped clips emptied one.

Samples are those of the paper datasets (:class:`~ogmge.data.paper.dataset.PaperDataset`):
``{"inputs": {"audio": (1, F, T) float32, "visual": (num_frames, 3, S, S)}, "label": int}``;
training draws random frames (sorted) and a random resized crop with a flip per sample,
evaluation takes evenly spaced frames resized whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .clips import DATASET, LIST_FILE, SPLIT_OVER, SPLIT_OVER_KEY, ClipSettings, clip_audio_features
from .errors import check_on_error
from .paper.cache import is_cache, read_manifest
from .paper.dataset import PaperDataset
from .paper.spec import PaperSpec
from .paper.splits import SPLITS, Record
from .splitting import group_split, stratified_split

#: Frames per sample given to the visual encoder by default (the paper: 3, 1 for CREMA-D).
DEFAULT_NUM_FRAMES = 3
#: Keywords passed on to :class:`~ogmge.data.paper.dataset.PaperDataset`.
DATASET_OPTIONS = ("num_frames", "image_size", "seed", "validate", "visual_dtype")


def _check_options(kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - set(DATASET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the clips dataset; known: val_fraction, "
                         f"test_fraction, split_seed, on_error, {', '.join(DATASET_OPTIONS)}")


@dataclass(frozen=True)
class ClipsCache:
    """What a ``prepare clips`` cache holds besides the arrays."""

    root: Path
    manifest: dict
    spec: PaperSpec
    class_names: list[str]
    records: list[Record]                 # every listed clip, label index and group
    splits: list[str | None]              # the ``split`` column per record (None without one)
    has_split: bool
    has_group: bool
    skipped: dict[str, str]               # clip -> "kind: reason" from skipped.txt


def open_cache(root: str | os.PathLike) -> ClipsCache:
    """Read ``manifest.json``, ``splits/clips.csv`` and ``skipped.txt`` of a clips cache."""
    root = Path(root)
    if not is_cache(root):
        raise FileNotFoundError(f"{root}: not a prepared clips cache (no manifest.json); "
                                f"run: ogmge prepare clips --source DIR_OR_CSV --out {root}")
    manifest = read_manifest(root, DATASET)
    settings = ClipSettings(**manifest["settings"])
    spec = PaperSpec(
        name=DATASET, audio_dir="", video_dir="", video_ext="", split_files={},
        audio_feature=partial(clip_audio_features, settings=settings), cached_audio="spectrogram",
        audio_shape=tuple(manifest["audio_shape"]), num_frames=DEFAULT_NUM_FRAMES,
    )
    names = list(manifest["class_names"])
    index = {n: i for i, n in enumerate(names)}
    list_path = root / "splits" / LIST_FILE
    if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: the clip list of the cache is missing; re-run ogmge prepare clips")
    records, splits = [], []
    with open(list_path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.DictReader(f), start=2):
            if row.get("label") not in index:
                raise ValueError(f"{list_path}:{lineno}: label {row.get('label')!r} not among the manifest's "
                                 f"classes {names}; re-run ogmge prepare clips")
            records.append(Record(row["clip"], index[row["label"]], row["group"] or None))
            splits.append(row["split"] or None)
    skipped: dict[str, str] = {}
    skipped_path = root / "skipped.txt"
    if skipped_path.is_file():
        for line in skipped_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                clip, kind, reason = (line.split("\t", 2) + ["", ""])[:3]
                skipped[clip] = f"{kind}: {reason}"
    return ClipsCache(root, manifest, spec, names, records, splits, bool(manifest.get("has_split")),
                      bool(manifest.get("has_group")), skipped)


def _carve(records: list[Record], fraction: float, seed: int, by_group: bool, what: str, where) -> tuple[list, list]:
    """``(rest, held)`` records: whole groups or stratified by class (:mod:`ogmge.data.splitting`)."""
    try:
        if by_group:
            rest, held = group_split([r.group for r in records], val_fraction=fraction, seed=seed)
        else:
            rest, held = stratified_split([r.label for r in records], val_fraction=fraction, seed=seed)
    except ValueError as exc:
        raise ValueError(f"{where}: cannot carve the {what} split from {len(records)} clips: {exc}; "
                         + (_GROUP_FIX if by_group else _MORE_CLIPS)) from None
    return [records[i] for i in rest], [records[i] for i in held]


_MORE_CLIPS = "add clips"
_GROUP_FIX = "add clips of more groups, or give the CSV a 'split' column"
#: What to raise for a split carved empty: its option and flag.
_FRACTION_FLAG = {"val": "--val-fraction", "test": "--set dataset_options={test_fraction: F}"}


def _too_small(where, what: str, fraction: float, pool: list[Record], by_group: bool, skipped: int) -> ValueError:
    """The error for a carved split that came out empty, saying what to change."""
    if by_group:
        fix = _GROUP_FIX
    else:
        need = 0.5 / max(len(pool), 1)  # floor(f * N + 1/2) >= 1  <=>  f >= 1 / (2 N)
        flag = _FRACTION_FLAG[what].replace("F", f"{math.ceil(need * 100) / 100:g}")
        fix = (f"{what}_fraction {fraction:g} of {len(pool)} clip(s) rounds to 0; raise it to at least "
               f"{math.ceil(need * 100) / 100:g} ({flag})" if need < 1 else f"only {len(pool)} clip(s) are left") \
            + " or " + _MORE_CLIPS
    more = f" ({skipped} listed clip(s) were skipped by prepare: see skipped.txt)" if skipped else ""
    return ValueError(f"{where}: the {what} split is empty{more}: {fix}")


def clip_splits(
    cache: ClipsCache, *, val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0
) -> dict[str, list[Record]]:
    """Records of ``train``, ``val`` and ``test`` (see the module docstring).

    A split asked for (a fraction above 0, or rows of the ``split`` column) that comes out
    empty raises a ValueError saying what to change. The records of clips ``prepare`` skipped
    stay in their listed split (the ``split`` column) or in train (carved splits), where
    :class:`ClipsDataset` leaves them out and lists them.
    """
    for name, value, hi in (("val_fraction", val_fraction, 1), ("test_fraction", test_fraction, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < hi:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    where = cache.root / "splits" / LIST_FILE
    if cache.manifest.get(SPLIT_OVER_KEY) != SPLIT_OVER:
        return _listed_splits(cache, val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed)
    by_group = cache.has_group
    skipped = [r for r in cache.records if r.clip in cache.skipped]
    pairs = [(r, x) for r, x in zip(cache.records, cache.splits) if r.clip not in cache.skipped]
    if cache.has_split:
        listed = {s: [r for r, x in zip(cache.records, cache.splits) if x == s] for s in SPLITS}
        out = {s: [r for r, x in pairs if x == s] for s in SPLITS}
        for s in SPLITS:
            if listed[s] and not out[s]:
                raise ValueError(f"{where}: every clip of split {s!r} ({len(listed[s])}) was skipped by prepare "
                                 f"(see {cache.root / 'skipped.txt'}); fix or replace those clips and re-run "
                                 f"ogmge prepare clips, or mark other clips {s!r}")
        if not listed["train"]:
            raise ValueError(f"{where}: no clip has split 'train'")
        if not listed["val"] and val_fraction > 0:
            out["train"], out["val"] = _carve(out["train"], val_fraction, split_seed, by_group, "val", where)
            if not out["val"]:
                raise _too_small(where, "val", val_fraction, out["train"], by_group, len(skipped))
        return _with_skipped(out, listed, cache)
    rest, test = [r for r, _ in pairs], list[Record]()
    if test_fraction > 0:
        rest, test = _carve(rest, test_fraction, split_seed, by_group, "test", where)
        if not test:
            raise _too_small(where, "test", test_fraction, rest, by_group, len(skipped))
    train, val = rest, list[Record]()
    if val_fraction > 0:
        train, val = _carve(rest, val_fraction, split_seed, by_group, "val", where)
        if not val:
            raise _too_small(where, "val", val_fraction, rest, by_group, len(skipped))
    if not train:
        raise _too_small(where, "train", 0.0, rest, by_group, len(skipped))
    return {"train": train + skipped, "val": val, "test": test}


def _with_skipped(out: dict[str, list[Record]], listed: dict[str, list[Record]], cache: ClipsCache) -> dict:
    """``out`` plus, per split, the skipped clips its ``split`` column listed (listed order kept)."""
    return {s: out[s] + [r for r in listed[s] if r.clip in cache.skipped] for s in SPLITS}


def _listed_splits(cache: ClipsCache, *, val_fraction: float, test_fraction: float, split_seed: int
                   ) -> dict[str, list[Record]]:
    """The splits of a cache prepared before :data:`~ogmge.data.clips.SPLIT_OVER_KEY`: carved
    over every listed clip (so runs trained on it keep their splits); a split the skipped
    clips emptied says how to carve over the prepared clips instead."""
    where = cache.root / "splits" / LIST_FILE
    by_group = cache.has_group
    if cache.has_split:
        out = {s: [r for r, x in zip(cache.records, cache.splits) if x == s] for s in SPLITS}
        if not out["train"]:
            raise ValueError(f"{where}: no clip has split 'train'")
        if not out["val"] and val_fraction > 0:
            out["train"], out["val"] = _carve(out["train"], val_fraction, split_seed, by_group, "val", where)
    else:
        rest, test = list(cache.records), list[Record]()
        if test_fraction > 0:
            rest, test = _carve(rest, test_fraction, split_seed, by_group, "test", where)
        train, val = rest, list[Record]()
        if val_fraction > 0:
            train, val = _carve(rest, val_fraction, split_seed, by_group, "val", where)
        out = {"train": train, "val": val, "test": test}
    for s in SPLITS:
        if out[s] and all(r.clip in cache.skipped for r in out[s]):
            raise ValueError(
                f"{cache.root}: every clip of the {s} split ({len(out[s])}) was skipped by prepare (see "
                f"{cache.root / 'skipped.txt'}): this cache was prepared by an earlier ogmge, which carves the "
                "splits over every listed clip; re-run ogmge prepare clips with the same --source and --out "
                "to carve them over the clips that were prepared (runs trained on the cache before then "
                "resume only with --allow-data-change)")
    return out


class ClipsDataset(PaperDataset):
    """One split of a ``prepare clips`` cache: a :class:`~ogmge.data.paper.dataset.PaperDataset`
    whose spectrogram shape and class names come from the cache's manifest."""

    def __init__(self, cache: ClipsCache, records, *, split: str, train: bool,
                 num_frames: int = DEFAULT_NUM_FRAMES, **kwargs) -> None:
        records = list(records)
        skipped = [(r.clip, cache.skipped[r.clip]) for r in records if r.clip in cache.skipped]
        kept = [r for r in records if r.clip not in cache.skipped]
        super().__init__(cache.spec, cache.root, kept, split=split, class_names=cache.class_names,
                         train=train, num_frames=num_frames, skipped=skipped, **kwargs)


def _checked_split_records(root: str | os.PathLike, on_error: str, options: dict, **fractions
                           ) -> tuple[ClipsCache, dict[str, list[Record]]]:
    """After checking ``on_error`` and the dataset ``options``: the cache at ``root`` and its
    split records (:func:`clip_splits` with ``fractions``)."""
    check_on_error(on_error)
    _check_options(options)
    cache = open_cache(root)
    return cache, clip_splits(cache, **fractions)


def load_clips(
    root: str | os.PathLike,
    *,
    split: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train: bool | None = None,
    on_error: str = "raise",
    **kwargs,
) -> ClipsDataset:
    """One split (``train``, ``val`` or ``test``) of a clips cache.

    ``kwargs`` go to :class:`~ogmge.data.paper.dataset.PaperDataset`: ``num_frames`` (3),
    ``image_size`` (224), ``seed`` (augmentations), ``validate``, ``visual_dtype``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cache, records = _checked_split_records(root, on_error, kwargs, val_fraction=val_fraction,
                                            test_fraction=test_fraction, split_seed=split_seed)
    if not records[split]:
        raise ValueError(f"{cache.root}: the {split!r} split is empty "
                         f"({'no row of the split column says so' if cache.has_split else 'its fraction is 0'})")
    return ClipsDataset(cache, records[split], split=split, train=(split == "train") if train is None else train,
                        on_error=on_error, **kwargs)


def load_clips_splits(
    root: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    on_error: str = "raise",
    **kwargs,
) -> dict[str, ClipsDataset | None]:
    """``{"train": ..., "val": ..., "test": ...}`` of a clips cache (None for an empty split);
    training augments, validation and test do not. Keywords as :func:`load_clips`."""
    cache, records = _checked_split_records(root, on_error, kwargs, val_fraction=val_fraction,
                                            test_fraction=test_fraction, split_seed=split_seed)
    return {s: ClipsDataset(cache, records[s], split=s, train=(s == "train"), on_error=on_error, **kwargs)
            if records[s] else None for s in SPLITS}


def read_class_names(root: str | os.PathLike) -> list[str]:
    """The class names of a clips cache (index order)."""
    return list(json.loads((Path(root) / "manifest.json").read_text())["class_names"])
