"""The contracts every layer shares (layer 0, docs/architecture.md): modality kinds,
:class:`ModalitySpec`, and the shapes of a sample and of a batch.

This module imports nothing from the rest of the package, so the modulation core,
the models, the data and the training loop may all import it. A per-sample
array's shape alone is ambiguous ((24, 30, 40) may be a grayscale clip or a
24-channel image), so every modality declares its kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from torch import Tensor

#: kind -> (accepted per-sample ranks, index of the variable-length axis or None)
KINDS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "vector": ((1,), None),
    "sequence": ((2,), 0),
    "image": ((3,), None),
    "video": ((4,), 0),
    "waveform": ((1, 2), -1),
    "spectrogram": ((3,), None),
}


@dataclass(frozen=True)
class ModalitySpec:
    """A modality's name, kind and per-sample shape (``None`` on a variable axis)."""

    name: str
    kind: str
    shape: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality {self.name!r}: unknown kind {self.kind!r}; known kinds: {sorted(KINDS)}")
        ranks, _ = KINDS[self.kind]
        if len(self.shape) not in ranks:
            raise ValueError(
                f"modality {self.name!r} of kind {self.kind!r} needs a per-sample rank in {ranks}, "
                f"got shape {self.shape}"
            )

    @property
    def variable_axis(self) -> int | None:
        """The per-sample axis along which lengths vary, or None."""
        axis = KINDS[self.kind][1]
        if axis is None:
            return None
        axis = axis % len(self.shape)
        return axis if self.shape[axis] is None else None


class _SampleRequired(TypedDict):
    inputs: dict[str, Tensor]
    label: int


class Sample(_SampleRequired, total=False):
    """What a dataset's ``__getitem__`` returns: ``inputs`` (per-sample tensors, no batch
    axis), ``label``, and ``lengths`` only for variable-length modalities. ``tag``: set by the
    trainer's re-sampled epochs (a method's per-position tag, ``BalancingMethod.begin_epoch``)."""

    lengths: dict[str, int]
    index: int
    tag: int


class _BatchRequired(TypedDict):
    inputs: dict[str, Tensor]
    labels: Tensor
    lengths: dict[str, Tensor]


class Batch(_BatchRequired, total=False):
    """What :func:`ogmge.data.collate.collate_samples` returns: ``inputs`` ``(B, ...)``
    (variable-length modalities zero-padded), ``labels`` ``LongTensor[B]``, ``lengths``
    ``{name: LongTensor[B]}`` (empty when no modality varies) and, when the samples carry
    one, ``index`` ``LongTensor[B]`` and ``tag`` ``LongTensor[B]``."""

    index: Tensor
    tag: Tensor


__all__ = ["KINDS", "Batch", "ModalitySpec", "Sample"]
