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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .kinds import KINDS, ModalitySpec

FORMAT_NAME = "ogmge-byo"
FORMAT_VERSION = 1
#: Values the optional ``split`` column may take.
SPLITS = ("train", "val", "test")
#: Array names with a fixed meaning; they cannot name a modality.
RESERVED = ("labels", "split", "group", "__meta__")
LENGTHS_SUFFIX = ".lengths"
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


def _variable_axis(kind: str, rank: int) -> int | None:
    axis = KINDS[kind][1]
    return None if axis is None else axis % rank


# -------------------------------------------------------------------------- dataset
class ArrayDataset(Dataset):
    """In-memory multimodal dataset of the contract format (docs/architecture.md).

    ``arrays[name]`` is ``(N, *sample_shape)``; for a modality in ``lengths``
    the variable axis is padded and sample ``i`` is trimmed to ``lengths[name][i]``.
    Exposes ``modalities``, ``num_classes``, ``class_names``, ``targets``,
    ``groups`` (or None) and ``splits`` (or None).
    """

    def __init__(
        self,
        arrays: Mapping[str, Tensor],
        labels: Sequence[int] | Tensor,
        *,
        kinds: Mapping[str, str],
        lengths: Mapping[str, Sequence[int] | Tensor] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        groups: Sequence | None = None,
        splits: Sequence[str] | None = None,
    ) -> None:
        self.arrays = {n: torch.as_tensor(a) for n, a in arrays.items()}
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        lengths = lengths or {}
        self.lengths = {n: torch.as_tensor(v, dtype=torch.long) for n, v in lengths.items()}
        self.modalities: dict[str, ModalitySpec] = {}
        for name, arr in self.arrays.items():
            shape = list(arr.shape[1:])
            axis = _variable_axis(kinds[name], len(shape)) if name in self.lengths else None
            if axis is not None:
                shape[axis] = None
            self.modalities[name] = ModalitySpec(name, kinds[name], tuple(shape))
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else int(self.labels.max()) + 1
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        self.targets = self.labels.tolist()
        self.groups = list(groups) if groups is not None else None
        self.splits = list(splits) if splits is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        inputs: dict[str, Tensor] = {}
        lens: dict[str, int] = {}
        for name, arr in self.arrays.items():
            x = arr[index]
            if name in self.lengths:
                n = int(self.lengths[name][index])
                x = x.narrow(self.modalities[name].variable_axis, 0, n)
                lens[name] = n
            inputs[name] = x
        sample = {"inputs": inputs, "label": int(self.labels[index])}
        if lens:
            sample["lengths"] = lens
        return sample

    def subset(self, indices: Sequence[int] | Tensor) -> ArrayDataset:
        """A new dataset of the given rows (attributes kept, arrays indexed)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        rows = idx.tolist()
        return ArrayDataset(
            {n: a[idx] for n, a in self.arrays.items()},
            self.labels[idx],
            kinds={n: s.kind for n, s in self.modalities.items()},
            lengths={n: v[idx] for n, v in self.lengths.items()},
            class_names=self.class_names,
            num_classes=self.num_classes,
            groups=None if self.groups is None else [self.groups[i] for i in rows],
            splits=None if self.splits is None else [self.splits[i] for i in rows],
        )

    def select_modalities(self, names: Sequence[str]) -> ArrayDataset:
        """The same rows with only the named modalities (e.g. a unimodal run)."""
        unknown = sorted(set(names) - set(self.arrays))
        if unknown or not names:
            raise ValueError(f"modalities must be a non-empty subset of {list(self.arrays)}, got {list(names)}")
        return ArrayDataset(
            {n: self.arrays[n] for n in names},
            self.labels,
            kinds={n: self.modalities[n].kind for n in names},
            lengths={n: self.lengths[n] for n in names if n in self.lengths},
            class_names=self.class_names,
            num_classes=self.num_classes,
            groups=self.groups,
            splits=self.splits,
        )

    def split(self, which: str) -> ArrayDataset:
        """The rows whose ``split`` column equals ``which``."""
        if which not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {which!r}")
        if self.splits is None:
            raise ValueError("this dataset has no 'split' column")
        return self.subset([i for i, s in enumerate(self.splits) if s == which])

    def __repr__(self) -> str:
        mods = ", ".join(f"{n}: {s.kind} {s.shape}" for n, s in self.modalities.items())
        return f"ArrayDataset({len(self)} samples, {self.num_classes} classes; {mods})"
