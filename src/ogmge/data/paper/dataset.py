"""One split of a paper dataset as a contract dataset (:class:`PaperDataset`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...contracts import ModalitySpec
from ...validation import check_choice, check_positive_int
from ..audio import check_finite
from ..collate import BufferedSamples, batch_buffers
from ..errors import DataError, check_on_error
from .readers import open_reader
from .spec import PaperSpec
from .splits import ParsedSplit, Record, check_clip_ids

#: ``visual_dtype`` of :class:`PaperDataset`: uint8 frames (normalised by the model) or
#: float32 frames normalised with ImageNet mean/std in the dataset.
VISUAL_DTYPES = ("uint8", "float32")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed, independent of DataLoader workers: mixes ``(seed, epoch, index)``."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


class PaperDataset(Dataset):
    """A paper dataset split, read from the extracted layout or from a ``prepare`` cache.

    Samples: ``{"inputs": {"audio": (1, F, T) float32, "visual": (T_v, 3, S, S)}, "label": int}``;
    ``visual`` is uint8 (cropped/resized, not normalised) or float32 (ImageNet-normalised), as
    ``visual_dtype`` says: ``"uint8"``, ``"float32"`` or ``None`` (default: ``"uint8"`` from a
    cache, ``"float32"`` from the extracted layout). uint8 frames are 4x smaller to move between
    DataLoader workers; :class:`ogmge.models.VisualEncoder` normalises uint8 input itself, other
    encoders need ``visual_dtype="float32"`` (or :func:`ogmge.data.transforms.normalize`).

    Attributes: ``modalities``, ``num_classes``, ``class_names``, ``targets``, ``groups``
    (CREMA-D actors, else None), ``clips``, ``skipped`` (``(clip or file, reason)`` left out
    under ``on_error="skip"``), ``source`` (``"cache"`` or ``"raw"``), ``reader`` (the
    :class:`~ogmge.data.paper.readers.ClipReader` -- cache or extracted layout -- that writes
    its clips' inputs), ``visual_dtype``.

    Randomness (training frames, crops, flips, VGGSound audio crops) comes from a per-sample
    ``torch.Generator`` seeded from ``(seed, epoch, index)``, so it is identical whatever the
    number of DataLoader workers; call :meth:`set_epoch` every epoch to draw new augmentations.
    """

    def __init__(
        self,
        spec: PaperSpec,
        root: str | os.PathLike,
        records: Sequence[Record],
        *,
        split: str,
        class_names: Sequence[str],
        train: bool,
        num_frames: int | None = None,
        image_size: int = 224,
        seed: int = 0,
        on_error: str = "raise",
        skipped: Sequence[tuple[str, str]] = (),
        validate: bool = True,
        visual_dtype: str | None = None,
    ) -> None:
        self.spec = spec
        self.root = Path(root)
        self.split = split
        self.train = bool(train)
        self.on_error = check_on_error(on_error)
        nf = check_positive_int("num_frames", spec.num_frames if num_frames is None else num_frames)
        check_positive_int("image_size", image_size)
        self.num_frames, self.image_size = nf, image_size
        self.seed, self.epoch = int(seed), 0
        self.reader = open_reader(spec, self.root)
        self.source = self.reader.source
        if visual_dtype is None:
            visual_dtype = self.reader.default_visual_dtype
        check_choice("visual_dtype", visual_dtype, VISUAL_DTYPES, also=" or None")
        self.visual_dtype = visual_dtype
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.skipped: list[tuple[str, str]] = list(skipped)
        check_clip_ids(records)
        kept = []
        problems: list[DataError] = []
        for r in records:
            try:
                self.reader.check(r.clip, validate=validate)
                kept.append(r)
            except DataError as exc:
                problems.append(exc)
                self.skipped.append((r.clip, str(exc)))
        if problems and self.on_error == "raise":
            head = "; ".join(str(p) for p in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise DataError(problems[0].path, problems[0].kind,
                            f"{len(problems)} clip(s) of {spec.name} {split} unusable: {head}{more}")
        if self.skipped:
            warnings.warn(f"{spec.name} {split}: skipped {len(self.skipped)} clip(s); see dataset.skipped",
                          stacklevel=2)
        self.records = kept
        self.clips = [r.clip for r in kept]
        self.targets = [r.label for r in kept]
        groups = [r.group for r in kept]
        self.groups = groups if kept and all(g is not None for g in groups) else None
        self.modalities = {
            "audio": ModalitySpec("audio", "spectrogram", spec.audio_shape),
            "visual": ModalitySpec("visual", "video", (nf, 3, image_size, image_size)),
        }

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentations of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def generator_for(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))

    # subclasses whose model input is not the cached audio itself override this
    def audio_into(self, clip: str, out: torch.Tensor, generator: torch.Generator) -> str | Path:
        """Write ``clip``'s audio input ``(1, F, T)`` into ``out`` (drawing any randomness from
        ``generator``, before the frames' draws); return where it came from."""
        return self.reader.audio_into(clip, out)

    def _sample_into(self, index: int, audio: torch.Tensor, visual: torch.Tensor) -> dict:
        """Sample ``index``, its inputs written into ``audio`` and ``visual``: the one path of
        ``self[i]`` and of the batched fetch."""
        r = self.records[index]
        g = self.generator_for(index)
        path = self.audio_into(r.clip, audio, g)
        check_finite(audio, path, "audio features")
        self.reader.frames_into(visual, r.clip, train=self.train, generator=g)
        return {"inputs": {"audio": audio, "visual": visual}, "label": r.label}

    def _input_shapes(self) -> dict[str, tuple[Sequence[int], torch.dtype]]:
        s = self.image_size
        vdtype = torch.float32 if self.visual_dtype == "float32" else torch.uint8
        return {"audio": (self.spec.audio_shape, torch.float32), "visual": ((self.num_frames, 3, s, s), vdtype)}

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """``[self[i] for i in indices]`` -- the DataLoader's batched fetch. The same samples, bit
        for bit (the same path, and the draws of each index come from its own generator, whatever
        the batch), written straight into :func:`~ogmge.data.collate.batch_buffers` (one
        shared-memory storage in a DataLoader worker): from a cache the audio is read from its file
        into its row, and only the crop's lines of the frames are read, cropped and resized into
        theirs. They come back as :class:`~ogmge.data.collate.BufferedSamples`, which
        :func:`~ogmge.data.collate.collate_samples` turns into those buffers without copying."""
        indices = list(indices)
        if not indices:
            return []
        bufs = batch_buffers(len(indices), self._input_shapes())
        audio, visual = bufs["audio"], bufs["visual"]
        return BufferedSamples([self._sample_into(i, audio[k], visual[k]) for k, i in enumerate(indices)], bufs)

    def __getitem__(self, index: int) -> dict:
        shapes = self._input_shapes()
        audio, visual = (torch.empty(shape, dtype=dtype) for shape, dtype in shapes.values())
        return self._sample_into(index, audio, visual)


def make_dataset(
    spec: PaperSpec, root: Path, parsed: ParsedSplit, *, split: str, class_names: Sequence[str],
    train: bool | None, on_error: str, seed: int, dataset_class: type[PaperDataset] = PaperDataset, **kwargs,
) -> PaperDataset:
    """The dataset of ``split`` over ``parsed``'s records; ``train`` (augmentation) defaults
    to ``split == "train"``; ``seed`` (the loader's, which also carved the split) seeds the
    per-sample augmentations."""
    return dataset_class(spec, root, parsed.records, split=split, class_names=class_names,
                         train=(split == "train") if train is None else train, on_error=on_error,
                         skipped=parsed.skipped, seed=seed, **kwargs)
