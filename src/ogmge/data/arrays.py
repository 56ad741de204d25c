"""In-memory multimodal datasets of the contract format (docs/architecture.md).

:class:`ArrayDataset` holds one array per modality and the labels; the
bring-your-own loader (:mod:`ogmge.data.byo`) and the built-in data
(:mod:`ogmge.data.builtin`) build it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..contracts import KINDS, ModalitySpec

#: Values a dataset's ``split`` column may take.
SPLITS = ("train", "val", "test")


def variable_axis(kind: str, rank: int) -> int | None:
    axis = KINDS[kind][1]
    return None if axis is None else axis % rank


def show_values(values: Sequence[int], limit: int = 8) -> str:
    """``{3, 7, 100}``: label values for a message (the first ``limit``)."""
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return "{" + shown + (f", ... ({len(values)} values)" if len(values) > limit else "") + "}"


class ArrayDataset(Dataset):
    """In-memory multimodal dataset of the contract format (docs/architecture.md).

    ``arrays[name]`` is ``(N, *sample_shape)``; for a modality in ``lengths``
    the variable axis is padded and sample ``i`` is trimmed to ``lengths[name][i]``.
    Exposes ``modalities``, ``num_classes``, ``class_names``, ``targets``,
    ``groups`` (or None), ``splits`` (or None) and ``label_values`` (or None).
    Without ``class_names`` and ``num_classes``, labels must be 0..C-1 (every class present):
    others are refused rather than widened to ``max(label) + 1`` classes.
    """

    def __init__(
        self,
        arrays: Mapping[str, Tensor],
        labels: Sequence[int] | Tensor | np.ndarray,
        *,
        kinds: Mapping[str, str],
        lengths: Mapping[str, Sequence[int] | Tensor] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        groups: Sequence | None = None,
        splits: Sequence[str] | None = None,
        label_values: Sequence[int] | None = None,
    ) -> None:
        self.arrays = {n: torch.as_tensor(a) for n, a in arrays.items()}
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        lengths = lengths or {}
        self.lengths = {n: torch.as_tensor(v, dtype=torch.long) for n, v in lengths.items()}
        self.modalities: dict[str, ModalitySpec] = {}
        for name, arr in self.arrays.items():
            if name not in kinds:
                raise ValueError(f"array {name!r} has no kind in kinds={dict(kinds)}")
            if arr.dim() < 2 or len(arr) != len(self.labels):
                raise ValueError(
                    f"array {name!r} has shape {tuple(arr.shape)}; expected ({len(self.labels)}, ...) like 'labels'"
                )
            shape: list[int | None] = list(arr.shape[1:])
            axis = variable_axis(kinds[name], len(shape)) if name in self.lengths else None
            if axis is not None:
                shape[axis] = None
            self.modalities[name] = ModalitySpec(name, kinds[name], tuple(shape))
        if num_classes is None and class_names is None and len(self.labels):
            present = torch.unique(self.labels)
            if int(present[0]) != 0 or int(present[-1]) != len(present) - 1:
                raise ValueError(
                    f"labels take the values {show_values(present.tolist())}, not 0..C-1: pass class_names "
                    "(or num_classes) to say how many classes there are, or relabel them 0..C-1 "
                    "(load_byo does so, keeping the values as class names)")
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else int(self.labels.max()) + 1
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        self.targets = self.labels.tolist()
        self.groups = list(groups) if groups is not None else None
        self.splits = list(splits) if splits is not None else None
        #: the label values of the source when ``load_byo`` renumbered them (class i had label_values[i])
        self.label_values = list(label_values) if label_values is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        inputs: dict[str, Tensor] = {}
        lens: dict[str, int] = {}
        for name, arr in self.arrays.items():
            x = arr[index]
            if name in self.lengths:
                n = int(self.lengths[name][index])
                x = x.narrow(cast(int, self.modalities[name].variable_axis), 0, n)
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
            label_values=self.label_values,
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
            label_values=self.label_values,
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
