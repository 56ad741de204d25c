"""Datasets for a run: train / val / test from a config, validation carving,
modality subsets, checks of what is trainable, and the loaders: a seeded sampler
whose order is a function of the epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ogmge.data.collate import collate_samples
from ogmge.data.splitting import group_split, stratified_split, subset

from .config import PAPER_DATASETS, TrainConfig

LOGGER = logging.getLogger("ogmge.training")


@dataclass
class DataBundle:
    """The splits of a run; ``val`` is None when ``val_fraction`` is 0."""

    train: Dataset
    val: Dataset | None
    test: Dataset | None

    @property
    def modalities(self) -> dict:
        return dict(self.train.modalities)

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)

    @property
    def class_names(self) -> list[str]:
        names = getattr(self.train, "class_names", None)
        return list(names) if names is not None else [str(c) for c in range(self.num_classes)]


class ModalityView(Dataset):
    """The same samples with only the named modalities."""

    def __init__(self, base: Dataset, names: Sequence[str]) -> None:
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
        return [self._select(s) for s in samples]

    def _select(self, sample: dict) -> dict:
        out = {"inputs": {n: sample["inputs"][n] for n in self.names}, "label": sample["label"]}
        lengths = sample.get("lengths") or {}
        kept = {n: v for n, v in lengths.items() if n in self.names}
        if kept:
            out["lengths"] = kept
        return out

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.base, epoch)


def set_epoch(dataset, epoch: int) -> None:
    """Tell a dataset with per-epoch augmentations (``set_epoch``) which epoch it is."""
    fn = getattr(dataset, "set_epoch", None)
    if callable(fn):
        fn(epoch)


def holdout(dataset: Dataset, fraction: float, *, seed: int) -> tuple[list[int], list[int]]:
    """Seeded ``(rest, held_out)`` indices: whole groups when the dataset has
    ``groups`` (speaker, subject), else stratified by class (``ogmge.data.splitting``)."""
    groups = getattr(dataset, "groups", None)
    if groups is not None and len(set(map(str, groups))) > 1:
        return group_split([str(g) for g in groups], val_fraction=fraction, seed=seed)
    return stratified_split(dataset.targets, val_fraction=fraction, seed=seed)


def select_modalities(dataset: Dataset | None, names: Sequence[str] | None) -> Dataset | None:
    if dataset is None or names is None:
        return dataset
    if list(names) == list(dataset.modalities):
        return dataset
    unknown = sorted(set(names) - set(dataset.modalities))
    if unknown:
        raise ValueError(f"modalities: {unknown} not in the dataset, which has {list(dataset.modalities)}")
    if hasattr(dataset, "select_modalities"):
        return dataset.select_modalities(list(names))
    return ModalityView(dataset, names)


def build_datasets(config: TrainConfig) -> DataBundle:
    """Train / val / test for ``config.dataset``.

    The built-in data use their own validation split and a bring-your-own
    file its ``split`` column's ``val`` rows when present; the paper
    datasets carve ``val_fraction`` of train in their reader (AVE: its
    official val list); otherwise ``val_fraction`` of train is held out
    here (seeded; whole groups when the data have groups, else stratified).
    ``val_fraction`` 0 means no validation: the last epoch is kept. For the
    built-in data, ``dataset_options.seed`` is the data's seed (default 0),
    independent of the training ``seed``.
    """
    opts = dict(config.dataset_options)
    train = val = test = None
    if config.dataset == "builtin":
        from ogmge.data.builtin import make_builtin_dataset

        if config.imbalance is not None:
            opts.setdefault("imbalance", config.imbalance)
        seed = opts.pop("seed", 0)
        sizes = opts.pop("num_samples", {}) or {}
        if not isinstance(sizes, dict):
            raise ValueError(f"dataset_options.num_samples must map split -> count, got {sizes!r}")

        def make(split):
            return make_builtin_dataset(split, seed=seed, num_samples=sizes.get(split), **opts)

        train, test = make("train"), make("test")
        val = make("val") if config.val_fraction > 0 else None
    elif config.dataset == "byo":
        from ogmge.data.byo import load_byo

        test_fraction = opts.pop("test_fraction", 0.2)
        full = load_byo(config.data, **opts)
        splits = getattr(full, "splits", None)
        if splits is not None:
            counts = {v: splits.count(v) for v in ("train", "val", "test")}
            if counts["train"] == 0:
                raise ValueError(
                    f"{config.data}: the 'split' column has no 'train' rows (rows per value: {counts}); "
                    "mark the training rows 'train', or drop the column to hold out a test share"
                )
            if counts["test"] == 0:
                LOGGER.warning("%s: the 'split' column has no 'test' rows (rows per value: %s): "
                               "this run has no test evaluation", config.data, counts)
            train = full.split("train")
            test = full.split("test") if counts["test"] else None
            val = full.split("val") if counts["val"] and config.val_fraction > 0 else None
        else:  # no split column: hold out a seeded test share (by group when groups are given)
            rest, held = holdout(full, test_fraction, seed=config.seed + 1)
            train, test = subset(full, rest), subset(full, held)
    elif config.dataset in PAPER_DATASETS:
        if not config.data_root:
            raise ValueError(f"dataset {config.dataset!r} needs data_root (--data-root DIR)")
        from ogmge.data.paper import load_paper_dataset

        opts.setdefault("val_fraction", config.val_fraction)
        opts.setdefault("seed", config.seed)

        def make(split):  # split_file is the training list; the test list is found in data_root
            split_file = config.split_file if split != "test" else None
            return load_paper_dataset(config.dataset, config.data_root, split=split, split_file=split_file, **opts)

        train, test = make("train"), make("test")
        val = make("val") if config.val_fraction > 0 else None
    if val is None and config.val_fraction > 0:
        rest, held = holdout(train, config.val_fraction, seed=config.seed)
        train, val = subset(train, rest), subset(train, held)
    names = config.modalities
    return DataBundle(
        select_modalities(train, names), select_modalities(val, names), select_modalities(test, names)
    )


def check_trainable(bundle: DataBundle) -> None:
    """Refuse data a classifier cannot be trained on: an empty split, or fewer than two
    classes present in training (a ValueError naming the split and what it holds)."""
    for split in ("train", "val", "test"):
        ds = getattr(bundle, split)
        if ds is not None and len(ds) == 0:
            raise ValueError(f"the {split} split is empty (0 samples); check the data's split column or fractions")
    targets = getattr(bundle.train, "targets", None)
    if targets is not None:
        present = sorted({int(t) for t in targets})
        if len(present) < 2:
            raise ValueError(
                f"the training split holds a single class ({bundle.class_names[present[0]]!r}, label "
                f"{present[0]}, {len(targets)} samples): a classifier needs at least two classes present in training"
            )


def make_loader(
    dataset, config: TrainConfig, *, shuffle: bool, ctx=None, device=None
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over ``dataset`` with the run's seeded ``EpochSampler`` (sharded
    over ranks when ``shuffle``; ``ctx`` is the ``distributed.DistContext``)."""
    rank, world = (ctx.rank, ctx.world_size) if (ctx is not None and shuffle) else (0, 1)
    sampler = EpochSampler(len(dataset), seed=config.seed, shuffle=shuffle, rank=rank, world_size=world)
    batch = config.batch_size if shuffle else (config.eval_batch_size or config.batch_size)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        collate_fn=collate_samples,
        num_workers=config.num_workers,
        pin_memory=device is not None and torch.device(device).type == "cuda",
        generator=gen,
        persistent_workers=False,
    )
    return loader, sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random order (sampler) and worker seeds (loader)."""
    return seed * 100_003 + epoch


class EpochSampler(Sampler[int]):
    """Seeded order that depends only on ``(seed, epoch)``, sharded over ranks.

    A resumed run sets the same epoch and gets the same order, with no state to
    save. With ``world_size`` > 1 the order is padded to a multiple of the
    world size and rank r takes every world_size-th index from r (as
    ``DistributedSampler`` does).
    """

    def __init__(
        self, length: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            idx = torch.randperm(self.length, generator=gen).tolist()
        else:
            idx = list(range(self.length))
        if self.world_size > 1:
            total = math.ceil(self.length / self.world_size) * self.world_size
            idx = (idx * math.ceil(total / max(len(idx), 1)))[:total]
            idx = idx[self.rank :: self.world_size]
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        if self.world_size > 1:
            return math.ceil(self.length / self.world_size)
        return self.length
