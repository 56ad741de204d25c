"""Bring-your-own data: a documented on-disk format and a validating loader.

Two layouts hold the same content (see docs/data.md):

* one ``.npz`` file with one array per modality (named by the modality),
  ``labels``, optional ``<name>.lengths``, ``split``, ``group`` and a JSON
  string ``__meta__`` (kinds, class names, format version);
* a directory of ``.npy`` files plus ``manifest.json`` (or ``manifest.yaml``)
  naming them.

Variable-length modalities are stored zero-padded to the longest sample with
per-sample lengths; the loader trims each sample back to its length, and
``collate_samples`` pads again to the longest in each batch.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor

from ..contracts import KINDS
from .arrays import SPLITS, ArrayDataset, show_values, variable_axis

FORMAT_NAME = "ogmge-byo"
FORMAT_VERSION = 1
#: Array names with a fixed meaning; they cannot name a modality.
RESERVED = ("labels", "split", "group", "__meta__")
LENGTHS_SUFFIX = ".lengths"
#: The dtype the loader hands to the model; finiteness is checked after casting to it.
MODEL_DTYPE = np.float32
MANIFEST_NAMES = ("manifest.json", "manifest.yaml", "manifest.yml")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


# ---------------------------------------------------------------------------- kinds
def infer_kind(sample_shape: Sequence[int], *, has_lengths: bool = False) -> str:
    """The documented default kind for an undeclared modality, from its per-sample rank.

    rank 1 -> ``waveform`` if it has lengths, else ``vector``; rank 2 -> ``sequence``;
    rank 3 -> ``image`` (a 1-channel spectrogram must be declared); rank 4 -> ``video``.
    """
    rank = len(sample_shape)
    if rank == 1:
        return "waveform" if has_lengths else "vector"
    default = {2: "sequence", 3: "image", 4: "video"}.get(rank)
    if default is None:
        raise ValueError(f"cannot infer a kind for per-sample shape {tuple(sample_shape)}; declare it")
    return default


def _check_kind(name: str, kind: str, sample_shape: tuple[int, ...], has_lengths: bool) -> None:
    if kind not in KINDS:
        raise ValueError(f"array {name!r}: unknown kind {kind!r}; known kinds: {sorted(KINDS)}")
    ranks, var_axis = KINDS[kind]
    if len(sample_shape) not in ranks:
        raise ValueError(
            f"array {name!r}: declared kind {kind!r} needs a per-sample rank in {ranks}, "
            f"got per-sample shape {sample_shape}"
        )
    if kind == "spectrogram" and sample_shape[0] != 1:
        raise ValueError(f"array {name!r}: kind 'spectrogram' needs per-sample shape (1, F, T), got {sample_shape}")
    if has_lengths and var_axis is None:
        raise ValueError(f"array {name!r}: kind {kind!r} is fixed-size; it cannot have lengths")


# --------------------------------------------------------------------- validation
@dataclass(frozen=True)
class ByoContent:
    """Bring-your-own content after :func:`validate_byo`: every field checked, kinds filled in.

    ``arrays``, ``kinds`` and ``lengths`` are keyed by modality name (``lengths`` only for the
    variable-length modalities that have them); ``labels`` is int64; ``split`` (strings from
    ``SPLITS``), ``groups`` and ``class_names`` are None when not given.
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    kinds: dict[str, str]
    lengths: dict[str, np.ndarray]
    split: np.ndarray | None
    groups: np.ndarray | None
    class_names: list[str] | None


def contiguous_labels(labels: np.ndarray) -> tuple[np.ndarray, list[int] | None]:
    """``(labels, None)`` when they are 0..C-1 with every class present; else labels renumbered
    0..C-1 in the order of their values and the values (``values[i]`` is class ``i``'s label)."""
    values = np.unique(labels)
    if values[0] == 0 and values[-1] == len(values) - 1:
        return labels, None
    return np.searchsorted(values, labels).astype(np.int64), [int(v) for v in values]


def describe_relabel(values: Sequence[int]) -> str:
    """The line shown when labels were renumbered: the mapping, value -> class index."""
    pairs = ", ".join(f"{v}->{i}" for i, v in enumerate(values[:8])) + (", ..." if len(values) > 8 else "")
    return (f"labels {show_values(values)} are not 0..C-1: renumbered to classes 0..{len(values) - 1} "
            f"({pairs}); the class names keep the original values")


def _as_column(name: str, values, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"array {name!r} must be 1-D with one entry per sample ({n}), got shape {arr.shape}")
    return arr


def _pad_ragged(name: str, samples: Sequence, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad a list of per-sample arrays along the kind's variable axis; return (array, lengths)."""
    arrs = [np.asarray(s) for s in samples]
    if not arrs:
        raise ValueError(f"array {name!r} has no samples")
    rank = arrs[0].ndim
    kind = kind or infer_kind(arrs[0].shape, has_lengths=True)
    if kind not in KINDS or KINDS[kind][1] is None:
        raise ValueError(f"array {name!r}: samples of different shapes need a variable-length kind, got {kind!r}")
    axis = cast(int, KINDS[kind][1]) % max(rank, 1)
    if any(a.ndim != rank for a in arrs):
        raise ValueError(f"array {name!r}: samples have different ranks")
    longest = max(a.shape[axis] for a in arrs)
    shape = list(arrs[0].shape)
    shape[axis] = longest
    out = np.zeros((len(arrs), *shape), dtype=np.result_type(*arrs))
    for i, a in enumerate(arrs):
        rest = [s for j, s in enumerate(a.shape) if j != axis]
        if rest != [s for j, s in enumerate(shape) if j != axis]:
            raise ValueError(f"array {name!r}: sample {i} has shape {a.shape}, which differs off the variable axis")
        index = [slice(None)] * rank
        index[axis] = slice(0, a.shape[axis])
        out[tuple([i, *index])] = a  # type: ignore[index]
    return out, np.asarray([a.shape[axis] for a in arrs], dtype=np.int64)


def validate_byo(
    arrays: Mapping[str, np.ndarray],
    labels,
    *,
    kinds: Mapping[str, str] | None = None,
    lengths: Mapping[str, np.ndarray] | None = None,
    split=None,
    groups=None,
    class_names: Sequence[str] | None = None,
) -> ByoContent:
    """Check bring-your-own content; return it normalised (kinds filled in by inference).

    Every problem is a ValueError naming the array: missing labels, mismatched
    sample counts, NaN/inf, unknown kinds, a per-sample shape that disagrees
    with the declared kind, lengths out of range, unknown split values.
    """
    if labels is None:
        raise ValueError("array 'labels' is missing: bring-your-own data needs integer labels, one per sample")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"array 'labels' must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"array 'labels' must hold integers, got dtype {labels.dtype}")
    n = len(labels)
    if n == 0:
        raise ValueError("array 'labels' is empty")
    if labels.min() < 0:
        raise ValueError(f"array 'labels' holds a negative label ({int(labels.min())})")
    if class_names is not None:
        if isinstance(class_names, (str, bytes, np.ndarray)) and np.ndim(class_names) == 0 or isinstance(
            class_names, Mapping
        ):
            raise ValueError(f"class_names must be a list of names, one per class, got {class_names!r}")
        class_names = [str(c) for c in class_names]
        if labels.max() >= len(class_names):
            raise ValueError(
                f"array 'labels' holds label {int(labels.max())} but only {len(class_names)} class_names are given"
            )
    if not arrays:
        raise ValueError("no modality arrays: give at least one array besides 'labels'")
    kinds = dict(kinds or {})
    lengths = dict(lengths or {})
    for key in list(kinds) + list(lengths):
        if key not in arrays:
            raise ValueError(f"array {key!r} is declared (kind or lengths) but missing")
    out_arrays: dict[str, np.ndarray] = {}
    out_lengths: dict[str, np.ndarray] = {}
    out_kinds: dict[str, str] = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in RESERVED:
            raise ValueError(
                f"array {name!r}: a modality name must match {_NAME_RE.pattern} and not be one of {RESERVED}"
            )
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} must be numeric, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ValueError(f"array {name!r} must be (samples, ...), got shape {arr.shape}")
        if arr.shape[0] != n:
            raise ValueError(f"array {name!r} has {arr.shape[0]} samples but 'labels' has {n}")
        sample_shape = tuple(arr.shape[1:])
        if 0 in sample_shape:
            raise ValueError(
                f"array {name!r} has per-sample shape {sample_shape}: an axis of size 0 holds no data; every "
                "sample needs at least one step / value along each axis (pad short samples and give lengths)")
        has_lengths = name in lengths and lengths[name] is not None
        kind = kinds.get(name) or infer_kind(sample_shape, has_lengths=has_lengths)
        _check_kind(name, kind, sample_shape, has_lengths)
        if arr.dtype.kind == "f":
            # what the model sees: float32 (1e300 is finite in float64, inf in float32)
            with np.errstate(over="ignore", invalid="ignore"):
                seen = arr.astype(MODEL_DTYPE, copy=False)
            if not np.isfinite(seen).all():
                bad = int(np.nonzero(~np.isfinite(seen.reshape(n, -1)).all(axis=1))[0][0])
                raw_ok = np.isfinite(arr.reshape(n, -1)[bad]).all()
                detail = (f"values beyond the {np.dtype(MODEL_DTYPE).name} range the model computes in "
                          f"(max {np.finfo(MODEL_DTYPE).max:.3g})") if raw_ok else "NaN or inf"
                raise ValueError(f"array {name!r} contains {detail} (first in sample {bad})")
        if has_lengths:
            lens = np.asarray(lengths[name])
            key = name + LENGTHS_SUFFIX
            if lens.ndim != 1 or len(lens) != n:
                raise ValueError(f"array {key!r} must be 1-D with {n} entries, got shape {lens.shape}")
            if lens.dtype.kind not in "iu":
                raise ValueError(f"array {key!r} must hold integers, got dtype {lens.dtype}")
            axis = cast(int, variable_axis(kind, len(sample_shape)))  # a variable-length kind
            size = sample_shape[axis]
            if lens.min() < 1 or lens.max() > size:
                raise ValueError(
                    f"array {key!r} holds lengths in [{int(lens.min())}, {int(lens.max())}], outside "
                    f"[1, {size}] (the padded size of {name!r} along its variable axis)"
                )
            out_lengths[name] = lens.astype(np.int64)
        out_arrays[name] = arr
        out_kinds[name] = kind
    if split is not None:
        split = _as_column("split", split, n).astype(str)
        unknown = sorted(set(split.tolist()) - set(SPLITS))
        if unknown:
            raise ValueError(f"array 'split' holds unknown values {unknown[:5]}; allowed: {SPLITS}")
    if groups is not None:
        groups = _as_column("group", groups, n)
        if groups.dtype.kind not in "iuU":
            raise ValueError(f"array 'group' must hold integers or strings, got dtype {groups.dtype}")
    return ByoContent(
        arrays=out_arrays, labels=labels.astype(np.int64), kinds=out_kinds,
        lengths=out_lengths, split=split, groups=groups, class_names=class_names,
    )


# ------------------------------------------------------------------------- writing
def save_byo(
    path: str | Path,
    modalities: Mapping[str, np.ndarray | Tensor | Sequence],
    labels,
    *,
    kinds: Mapping[str, str] | None = None,
    lengths: Mapping[str, Sequence[int]] | None = None,
    split: Sequence[str] | None = None,
    groups: Sequence | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write bring-your-own data: a ``.npz`` file if ``path`` ends in ``.npz``, else a
    directory of ``.npy`` files with ``manifest.json``.

    ``modalities[name]`` is ``(N, *sample_shape)``, or a list of per-sample arrays
    of different lengths (zero-padded here, lengths recorded). The content is
    validated first (:func:`validate_byo`); returns the path written.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    length_arrays = {n: np.asarray(v) for n, v in (lengths or {}).items()}
    for name, value in modalities.items():
        if isinstance(value, Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, (list, tuple)):
            shapes = {np.shape(v) for v in value}
            if len(shapes) > 1:
                value, auto = _pad_ragged(name, value, (kinds or {}).get(name))
                if name in length_arrays and not np.array_equal(length_arrays[name], auto):
                    raise ValueError(f"array {name + LENGTHS_SUFFIX!r} disagrees with the sample lengths given")
                length_arrays[name] = auto
        arrays[name] = np.asarray(value)
    if isinstance(labels, Tensor):
        labels = labels.cpu().numpy()
    content = validate_byo(
        arrays, labels, kinds=kinds, lengths=length_arrays, split=split, groups=groups, class_names=class_names
    )
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kinds": content.kinds}
    if content.class_names is not None:
        meta["class_names"] = content.class_names
    files: dict[str, np.ndarray] = dict(content.arrays)
    files["labels"] = content.labels
    for name, lens in content.lengths.items():
        files[name + LENGTHS_SUFFIX] = lens
    if content.split is not None:
        files["split"] = content.split
    if content.groups is not None:
        files["group"] = content.groups
    if path.suffix == ".npz":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, __meta__=np.asarray(json.dumps(meta)), **files)  # type: ignore[arg-type]
        return path
    path.mkdir(parents=True, exist_ok=True)
    for key, arr in files.items():
        np.save(path / f"{key}.npy", arr, allow_pickle=False)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "labels": "labels.npy",
        "modalities": {
            name: {"kind": content.kinds[name], "file": f"{name}.npy"}
            | ({"lengths": f"{name}{LENGTHS_SUFFIX}.npy"} if name in content.lengths else {})
            for name in content.arrays
        },
    }
    if content.split is not None:
        manifest["split"] = "split.npy"
    if content.groups is not None:
        manifest["group"] = "group.npy"
    if content.class_names is not None:
        manifest["class_names"] = content.class_names
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------- loading
def _load_npy(path: Path, name: str) -> np.ndarray:
    """One ``.npy`` file; a ValueError naming the array and file when it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"array {name!r} ({path}) holds Python objects; store a numeric array") from None
        raise ValueError(f"array {name!r}: {path} is not a readable .npy file ({exc})") from None
    except (EOFError, OSError) as exc:
        raise ValueError(f"array {name!r}: {path} is empty or truncated ({type(exc).__name__}: {exc})") from None


def _read_npz(path: Path) -> dict:
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not a .npz file")
    try:
        z = np.load(path, allow_pickle=False)
    except (EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} is not a readable .npz file (truncated or not a NumPy archive: {type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array (.npy), not a .npz archive with 'labels' and modalities")
    files = {}
    with z:
        for key in z.files:
            try:
                files[key] = z[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise ValueError(f"{path}: array {key!r} holds Python objects; store a numeric array") from None
                raise ValueError(f"{path}: array {key!r} cannot be read ({exc})") from None
            except (EOFError, OSError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: array {key!r} is truncated or corrupt ({type(exc).__name__})") from None
    meta: dict = {}
    if "__meta__" in files:
        try:
            meta = json.loads(str(files.pop("__meta__")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: array '__meta__' is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: array '__meta__' must be a JSON object")
        if meta.get("kinds") is not None and not isinstance(meta["kinds"], dict):
            raise ValueError(
                f"{path}: '__meta__' field 'kinds' must map modality name -> kind, got {meta['kinds']!r}"
            )
    labels = files.pop("labels", None)
    split = files.pop("split", None)
    groups = files.pop("group", None)
    lengths = {k[: -len(LENGTHS_SUFFIX)]: files.pop(k) for k in list(files) if k.endswith(LENGTHS_SUFFIX)}
    return {
        "arrays": files, "labels": labels, "kinds": meta.get("kinds") or {}, "lengths": lengths,
        "split": split, "groups": groups, "class_names": meta.get("class_names"),
    }


def _read_dir(path: Path) -> dict:
    manifest_path = next((path / m for m in MANIFEST_NAMES if (path / m).is_file()), None)
    if manifest_path is None:
        raise ValueError(f"{path}: no manifest ({' / '.join(MANIFEST_NAMES)}) in this directory")
    text = manifest_path.read_text()
    if manifest_path.suffix == ".json":
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{manifest_path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    else:
        import yaml

        try:
            manifest = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ValueError(f"{manifest_path}{line}: not valid YAML ({problem})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: the manifest must be a mapping")

    def column(key: str):
        value = manifest.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            file = path / value
            if not file.is_file():
                raise ValueError(f"array {key!r}: file {file} named in {manifest_path.name} does not exist")
            return _load_npy(file, key)
        return np.asarray(value)

    mods = manifest.get("modalities")
    if not isinstance(mods, dict) or not mods:
        raise ValueError(f"{manifest_path}: 'modalities' must map each modality name to its file")
    arrays, kinds, lengths = {}, {}, {}
    for name, entry in mods.items():
        entry = {"file": entry} if isinstance(entry, str) else dict(entry)
        if "file" not in entry:
            raise ValueError(f"array {name!r}: the manifest entry has no 'file'")
        file = path / entry["file"]
        if not file.is_file():
            raise ValueError(f"array {name!r}: file {file} does not exist")
        arrays[name] = _load_npy(file, name)
        if entry.get("kind") is not None:
            kinds[name] = entry["kind"]
        if entry.get("lengths") is not None:
            lfile = path / entry["lengths"] if isinstance(entry["lengths"], str) else None
            if lfile is not None and not lfile.is_file():
                raise ValueError(f"array {name + LENGTHS_SUFFIX!r}: file {lfile} does not exist")
            lengths[name] = (_load_npy(lfile, name + LENGTHS_SUFFIX) if lfile is not None
                             else np.asarray(entry["lengths"]))
    return {
        "arrays": arrays, "labels": column("labels"), "kinds": kinds, "lengths": lengths,
        "split": column("split"), "groups": column("group"), "class_names": manifest.get("class_names"),
    }


def load_byo(
    path: str | Path,
    *,
    kinds: Mapping[str, str] | None = None,
    split: str | None = None,
    modalities: Sequence[str] | None = None,
) -> ArrayDataset:
    """Load and validate bring-your-own data (``.npz`` file or directory with a manifest).

    kinds: declare or override kinds (else those stored, else inferred by rank).
    split: keep only rows whose ``split`` column is ``"train"``, ``"val"`` or ``"test"``.
    modalities: keep only these modalities (e.g. to train one encoder alone).
    Returns an :class:`ArrayDataset` whose samples ``collate_samples`` batches.

    Without ``class_names``, labels that are not 0..C-1 (``{3, 7, 100}``) are renumbered in
    the order of their values (:func:`contiguous_labels`); the class names are then the
    values (``["3", "7", "100"]``) and ``dataset.label_values`` holds them (else None).
    """
    path = Path(path)
    if path.is_dir():
        raw = _read_dir(path)
    elif path.is_file():
        raw = _read_npz(path)
    else:
        raise FileNotFoundError(f"no bring-your-own data at {path}")
    raw["kinds"] = {**raw["kinds"], **dict(kinds or {})}
    try:
        content = validate_byo(
            raw["arrays"], raw["labels"], kinds=raw["kinds"], lengths=raw["lengths"],
            split=raw["split"], groups=raw["groups"], class_names=raw["class_names"],
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    groups = content.groups
    labels, values = content.labels, None
    class_names = content.class_names
    if class_names is None:  # classes 0..C-1 by the labels' values, never max(label) + 1 of them
        labels, values = contiguous_labels(labels)
        class_names = None if values is None else [str(v) for v in values]
    dataset = ArrayDataset(
        {n: torch.from_numpy(np.ascontiguousarray(a, dtype=MODEL_DTYPE)) for n, a in content.arrays.items()},
        torch.from_numpy(labels),
        kinds=content.kinds,
        lengths={n: torch.from_numpy(v) for n, v in content.lengths.items()},
        class_names=class_names,
        num_classes=None if class_names is not None else int(labels.max()) + 1,
        groups=None if groups is None else groups.tolist(),
        splits=None if content.split is None else content.split.tolist(),
        label_values=values,
    )
    if modalities is not None:
        dataset = dataset.select_modalities(list(modalities))
    if split is not None:
        dataset = dataset.split(split)
    return dataset
