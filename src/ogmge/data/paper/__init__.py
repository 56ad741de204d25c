"""Readers of the paper's datasets: CREMA-D, Kinetics-Sounds, VGGSound, AVE.

Each reads (a) the official extracted layout (documented in its module and in
docs/datasets.md) or (b) a cache written by ``ogmge prepare`` (detected by its
``manifest.json``). Entry point::

    load_paper_dataset(
        name: str,                      # "cremad" | "kinetics_sounds" | "vggsound" | "ave"
        root: str | PathLike,           # extracted layout or prepare cache
        *,
        split: str,                     # "train" | "val" | "test"
        split_file: str | PathLike | None = None,  # the official list to read: for "test" the test
                                        # list, for "train"/"val" the training list (val is carved
                                        # from it; AVE reads valSet.txt beside it); default: in root
        val_fraction: float = 0.1,      # val carved from the train list (seeded, stratified; 0 allowed)
        seed: int = 0,                  # split carving and per-sample augmentation seeds
        num_frames: int | None = None,  # default 1 (CREMA-D) or 3
        image_size: int = 224,
        train: bool | None = None,      # augment (random frames/crops/flips); default split == "train"
        on_error: str = "raise",        # or "skip": unusable clips listed in dataset.skipped
        validate: bool = True,          # header-check every cached clip up front
        visual_dtype: str | None = None,  # "uint8" (crop/resize only; VisualEncoder normalises) or
                                        # "float32" (ImageNet-normalised); default uint8 from a
                                        # cache, float32 from the extracted layout
        speaker_independent: bool = False,  # CREMA-D only: seeded actor-disjoint train/test
        test_fraction: float = 0.1,     # CREMA-D speaker-independent: share of actors in test
        class_names: list[str] | None = None,  # VGGSound only: fixed class map
    ) -> PaperDataset

Samples ``{"inputs": {"audio": (1, F, T) float32, "visual": (T_v, 3, 224, 224) uint8 or float32},
"label": int}``;
datasets expose ``modalities``, ``num_classes``, ``class_names``, ``targets``, ``groups``;
call ``dataset.set_epoch(epoch)`` each epoch for fresh augmentations.
"""

from __future__ import annotations

import os

from ...validation import check_choice, check_number
from . import ave, cremad, kinetics_sounds, vggsound
from .dataset import PaperDataset
from .readers import select_frames
from .splits import SPLITS, Record, carve_validation

DATASETS = {"cremad": cremad, "kinetics_sounds": kinetics_sounds, "vggsound": vggsound, "ave": ave}


def load_paper_dataset(
    name: str, root: str | os.PathLike, *, split: str, split_file: str | os.PathLike | None = None, **kwargs
) -> PaperDataset:
    """One split of a paper dataset; see the module docstring for every keyword."""
    check_choice("name", name, sorted(DATASETS))
    check_choice("split", split, SPLITS)
    check_number("seed", kwargs.get("seed", 0), integer=True)
    if name != "cremad":
        for key in ("speaker_independent", "test_fraction"):
            if key in kwargs:
                raise ValueError(f"{key} applies to 'cremad' only, not {name!r}")
    if name != "vggsound" and "class_names" in kwargs:
        raise ValueError(f"class_names applies to 'vggsound' only, not {name!r}")
    return DATASETS[name].load(root, split=split, split_file=split_file, **kwargs)


__all__ = ["DATASETS", "PaperDataset", "Record", "carve_validation", "load_paper_dataset", "select_frames"]
