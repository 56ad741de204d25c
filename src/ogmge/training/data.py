"""Datasets for a run: train / val / test from a config, validation carving,
modality subsets, checks of what is trainable, and the loaders: a seeded sampler
whose order is a function of the epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from ogmge.data.collate import collate_samples
from ogmge.data.splitting import group_split, stratified_split, subset
from ogmge.data.views import ModalityView

from .config import PAPER_DATASETS, TrainConfig

LOGGER = logging.getLogger("ogmge.training")


@dataclass
class DataBundle:
    """The splits of a run; ``val`` is None when ``val_fraction`` is 0."""

    # contract datasets (docs/architecture.md): attributes beyond torch's Dataset
    train: Any
    val: Any | None
    test: Any | None

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


def holdout(dataset: Any, fraction: float, *, seed: int, what: str = "held-out") -> tuple[list[int], list[int]]:
    """Seeded ``(rest, held_out)`` indices of a contract dataset: whole groups when the dataset has
    ``groups`` (speaker, subject), else stratified by class (``ogmge.data.splitting``).

    Data with groups are never split inside a group: when the part held out from has a single
    group left (two groups in all: one went to test), a ValueError says so and what to do.
    """
    groups = getattr(dataset, "groups", None)
    if groups is not None:
        names = sorted(set(map(str, groups)))
        if len(names) < 2:
            other = "" if what == "test" else "; with two groups in all, the other went to test"
            fix = ("mark the test rows in a 'split' column" if what == "test" else
                   "mark the validation rows in a 'split' column, or set --val-fraction 0 (no validation: "
                   "the last epoch is kept)")
            raise ValueError(
                f"the {what} split must take whole groups, but the {len(dataset)} samples it is carved from all "
                f"belong to one group ({names[0]!r}{other}): give three or more groups (test, validation and "
                f"training each take whole ones), {fix}")
        return group_split([str(g) for g in groups], val_fraction=fraction, seed=seed)
    return stratified_split(dataset.targets, val_fraction=fraction, seed=seed)


def select_modalities(dataset: Any | None, names: Sequence[str] | None) -> Any | None:
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
        from ogmge.data.builtin import builtin_identity, make_builtin_dataset

        identity = builtin_identity(opts)  # validates the options (and a pinned version)
        sizes = identity["num_samples"]

        def make(split):
            return make_builtin_dataset(
                split, regime=identity["regime"], seed=identity["seed"], frames=identity["frames"],
                num_samples=sizes, cue_prob=opts.get("cue_prob"),
            )

        train, test = make("train"), make("test")
        val = make("val") if config.val_fraction > 0 else None
    elif config.dataset == "byo":
        from ogmge.data.byo import load_byo

        test_fraction = opts.pop("test_fraction", 0.2)
        assert config.data is not None  # validate(): dataset byo needs data
        full = load_byo(config.data, **opts)
        if full.label_values is not None:
            from ogmge.data.byo import describe_relabel

            LOGGER.warning("%s: %s", config.data, describe_relabel(full.label_values))
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
            rest, held = holdout(full, test_fraction, seed=config.seed + 1, what="test")
            train, test = subset(full, rest), subset(full, held)
    elif config.dataset == "clips":  # a `prepare clips` cache; splits: ogmge.data.clips_dataset
        if not config.data_root:
            raise ValueError("dataset 'clips' needs data_root (--data-root CACHE from `ogmge prepare clips`)")
        from ogmge.data.clips_dataset import load_clips_splits

        opts.setdefault("seed", config.seed)
        parts = load_clips_splits(config.data_root, val_fraction=config.val_fraction, **opts)
        train, test = parts["train"], parts["test"]
        val = parts["val"] if config.val_fraction > 0 else None
    elif config.dataset in PAPER_DATASETS:
        data_root = config.data_root
        if not data_root:
            raise ValueError(f"dataset {config.dataset!r} needs data_root (--data-root DIR)")
        from ogmge.data.paper import load_paper_dataset

        opts.setdefault("val_fraction", config.val_fraction)
        opts.setdefault("seed", config.seed)

        def make(split):  # split_file is the training list; the test list is found in data_root
            split_file = config.split_file if split != "test" else None
            return load_paper_dataset(config.dataset, data_root, split=split, split_file=split_file, **opts)

        train, test = make("train"), make("test")
        val = make("val") if config.val_fraction > 0 else None
    if val is None and config.val_fraction > 0:
        rest, held = holdout(train, config.val_fraction, seed=config.seed, what="validation")
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


def data_identity(dataset) -> dict | None:
    """What identifies a run's data when it is the built-in data (its ``identity``:
    version, regime, seed, cue probabilities, sizes, knobs), else None. Takes a
    :class:`DataBundle` or a dataset (views are looked through)."""
    if isinstance(dataset, DataBundle):
        dataset = dataset.train
    for _ in range(8):  # ModalityView / DatasetView chains
        if dataset is None or getattr(dataset, "identity", None) is not None:
            break
        dataset = getattr(dataset, "base", None) or getattr(dataset, "dataset", None)
    identity = getattr(dataset, "identity", None)
    return dict(identity) if identity is not None else None


def _describe(identity: Mapping) -> str:
    return f"built-in data version {identity.get('version')!r} (regime {identity.get('regime')!r})"


def check_data_identity(recorded: Mapping | None, current: Mapping | None, *, what: str = "this run") -> None:
    """Refuse to evaluate or resume ``what`` on other built-in data than it was trained on.

    ``recorded``: the identity stored with the run (``data_identity`` at training
    time; None for a run that stored none). ``current``: ``data_identity`` of the
    data built now. Raises ValueError naming both versions (and regimes) when the
    versions differ, or the differing fields when the same version was generated
    with other options. Runs on other data (``current`` None and nothing recorded)
    pass: their fingerprint is checked elsewhere.
    """
    if current is None and recorded is None:
        return
    if recorded is None:
        assert current is not None  # both None returned above
        raise ValueError(
            f"{what} recorded no built-in data version (it was made before version {current.get('version')}, "
            f"i.e. on version 1); this installation generates {_describe(current)}: retrain it"
        )
    if current is None:
        raise ValueError(f"{what} was trained on {_describe(recorded)}, but the data now are not the built-in data")
    if recorded.get("version") != current.get("version"):
        raise ValueError(
            f"{what} was trained on {_describe(recorded)}; this installation generates {_describe(current)}: "
            "retrain it, or use the ogmge release that generated its version"
        )
    diffs = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if diffs:
        detail = "; ".join(f"{k}: recorded {recorded.get(k)!r}, now {current.get(k)!r}" for k in diffs)
        raise ValueError(f"{what} was trained on other {_describe(recorded)} data than these ({detail})")


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
