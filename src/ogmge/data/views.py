"""Views of a contract dataset (docs/architecture.md): some of its rows
(:class:`DatasetView`) or some of its modalities (:class:`ModalityView`). Both keep the
contract attributes and forward the batched fetch (``__getitems__``) and ``set_epoch``.
:class:`TaggedRows` is an epoch's re-sampled rows whose samples carry a tag each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from .collate import BufferedSamples


def set_epoch(dataset, epoch: int) -> None:
    """Tell a dataset with per-epoch augmentations (``set_epoch``) which epoch it is."""
    fn = getattr(dataset, "set_epoch", None)
    if callable(fn):
        fn(epoch)


class DatasetView(Dataset):
    """Rows ``indices`` of a dataset, keeping its contract attributes
    (``modalities``, ``num_classes``, ``class_names``; ``targets`` and ``groups`` re-indexed)
    and forwarding ``set_epoch`` (per-epoch augmentations) to it."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        # ``dataset``: any contract dataset (docs/architecture.md), not only a torch Dataset subclass
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.modalities = dict(dataset.modalities)
        self.num_classes = int(dataset.num_classes)
        self.class_names = list(getattr(dataset, "class_names", [str(c) for c in range(self.num_classes)]))
        targets = list(dataset.targets)
        self.targets = [targets[i] for i in self.indices]
        groups = getattr(dataset, "groups", None)
        self.groups = None if groups is None else [groups[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """Batched fetch (what a DataLoader calls), through the dataset's own when it has one."""
        rows = [self.indices[i] for i in indices]
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(rows) if callable(fetch) else [self.dataset[i] for i in rows]

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.dataset, epoch)


class ModalityView(Dataset):
    """The same samples with only the named modalities."""

    def __init__(self, base: Any, names: Sequence[str]) -> None:
        # ``base``: any contract dataset (docs/architecture.md)
        unknown = sorted(set(names) - set(base.modalities))
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the dataset, which has {list(base.modalities)}")
        self.base = base
        self.names = list(names)
        self.modalities = {n: base.modalities[n] for n in self.names}
        for attr in ("num_classes", "class_names", "targets", "groups"):
            setattr(self, attr, getattr(base, attr, None))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        return self._select(self.base[index])

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """Batched fetch (what a DataLoader calls), through the base dataset's own when it has one."""
        fetch = getattr(self.base, "__getitems__", None)
        samples = fetch(list(indices)) if callable(fetch) else [self.base[i] for i in indices]
        selected = [self._select(s) for s in samples]
        if isinstance(samples, BufferedSamples):  # still the buffers' rows: collated without a copy
            return BufferedSamples(selected, samples.buffers)
        return selected

    def _select(self, sample: dict) -> dict:
        out = {"inputs": {n: sample["inputs"][n] for n in self.names}, "label": sample["label"]}
        lengths = sample.get("lengths") or {}
        kept = {n: v for n, v in lengths.items() if n in self.names}
        if kept:
            out["lengths"] = kept
        return out

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.base, epoch)


class TaggedRows(Dataset):
    """Rows ``indices`` of a dataset (repeats allowed), sample ``k`` also carrying ``"tag"``:
    ``tags[k]`` (an int). The trainer builds it from a method's re-sampled epoch
    (``BalancingMethod.begin_epoch`` returning ``(indices, tags)``); the collated batch then
    holds ``tag`` (``LongTensor[B]``), so a tag follows its sample through shuffling, DDP
    sharding and loader workers. Each sample is a new dict: two copies of one row in a batch
    keep their own tags."""

    def __init__(self, dataset: Any, indices: Sequence[int], tags: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.tags = [int(t) for t in tags]
        if len(self.tags) != len(self.indices):
            raise ValueError(f"tags must give one tag per index: {len(self.tags)} tags for "
                             f"{len(self.indices)} indices")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        return {**self.dataset[self.indices[k]], "tag": self.tags[k]}

    def __getitems__(self, ks: Sequence[int]) -> list[dict]:
        """Batched fetch through the dataset's own when it has one (its buffers kept)."""
        rows = [self.indices[k] for k in ks]
        fetch = getattr(self.dataset, "__getitems__", None)
        samples = fetch(rows) if callable(fetch) else [self.dataset[i] for i in rows]
        tagged = [{**s, "tag": self.tags[k]} for s, k in zip(samples, ks)]
        if isinstance(samples, BufferedSamples):
            return BufferedSamples(tagged, samples.buffers)
        return tagged

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.dataset, epoch)
