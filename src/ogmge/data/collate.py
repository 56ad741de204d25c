"""Batching of samples ``{"inputs", "label", "lengths"}`` into padded batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from ..contracts import Batch, Sample


def pad_stack(tensors: Sequence[Tensor], axis: int) -> Tensor:
    """Stack tensors that differ only along ``axis`` (per-sample), zero-padding to the longest."""
    out = tensors[0].new_zeros(_padded_shape(tensors, axis))
    return _pad_into(out, tensors, axis)


def _padded_shape(tensors: Sequence[Tensor], axis: int) -> tuple[int, ...]:
    shape = list(tensors[0].shape)
    shape[axis] = max(t.shape[axis] for t in tensors)
    return (len(tensors), *shape)


def _pad_into(out: Tensor, tensors: Sequence[Tensor], axis: int) -> Tensor:
    for i, t in enumerate(tensors):
        out[i].narrow(axis, 0, t.shape[axis]).copy_(t)
    return out


_ALIGN = 64  # byte alignment of each tensor inside a batch's one storage


def _in_one_storage(specs: Sequence[tuple[tuple[int, ...], torch.dtype]], *, shared: bool) -> list[Tensor]:
    """Uninitialised tensors of the given ``(shape, dtype)`` laid out, 64-byte aligned, in one
    storage -- in shared memory when ``shared``: a DataLoader worker then sends the batch to the
    main process as one file descriptor, not one per tensor."""
    offsets, total = [], 0
    for shape, dtype in specs:
        total = -(-total // _ALIGN) * _ALIGN
        offsets.append(total)
        total += math.prod(shape) * dtype.itemsize
    n = max(1, total)
    storage = torch.UntypedStorage._new_shared(n) if shared else torch.UntypedStorage(n)
    return [torch.empty(0, dtype=dtype).set_(storage, off // dtype.itemsize, shape)  # type: ignore[call-overload]
            for (shape, dtype), off in zip(specs, offsets)]


class BatchBuffers(Mapping[str, Tensor]):
    """The uninitialised batch tensors of :func:`batch_buffers`, by input name, and ``labels``:
    the labels' place in their shared storage (inside a DataLoader worker), else None."""

    def __init__(self, tensors: dict[str, Tensor], labels: Tensor | None) -> None:
        self.tensors = tensors
        self.labels = labels

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def holds_rows(self, name: str, tensors: Sequence[Tensor]) -> bool:
        """Whether ``tensors`` are, in order, exactly the rows of buffer ``name``."""
        buf = self.tensors.get(name)
        if buf is None or buf.shape[0] != len(tensors):
            return False
        step, start = buf.stride(0), buf.storage_offset()
        return all(
            t._base is buf and t.storage_offset() == start + k * step and t.shape == buf.shape[1:]
            and t.dtype == buf.dtype and t.stride() == buf.stride()[1:]
            for k, t in enumerate(tensors)
        )


class BufferedSamples(list):
    """Samples that a dataset's batched fetch wrote into the rows of :class:`BatchBuffers`
    (``buffers``): :func:`collate_samples` hands those buffers on as the batch, without a
    copy. A plain list (a reordering, a slice) is collated by copying, with the same values."""

    def __init__(self, samples: Iterable[dict], buffers: BatchBuffers) -> None:
        super().__init__(samples)
        self.buffers = buffers


def batch_buffers(size: int, inputs: dict[str, tuple[Sequence[int], torch.dtype]]) -> BatchBuffers:
    """Uninitialised batch tensors ``(size, *shape)`` of each input ``name: (shape, dtype)``, for a
    dataset's batched fetch (``__getitems__``) to write its samples into and return them as
    :class:`BufferedSamples`: samples whose inputs are, in order, the rows ``buf[0], ...,
    buf[size - 1]`` of these buffers then collate (:func:`collate_samples`) to the buffers
    themselves, without a copy. In a DataLoader worker they live in shared memory, in one
    storage with room for the batch's labels (as :func:`collate_samples` lays a batch out
    there); elsewhere each is a plain tensor."""
    size = int(size)
    specs = [((size, *(int(n) for n in shape)), dtype) for shape, dtype in inputs.values()]
    if get_worker_info() is not None:
        *bufs, labels = _in_one_storage([*specs, ((size,), torch.long)], shared=True)
    else:
        bufs, labels = [torch.empty(shape, dtype=dtype) for shape, dtype in specs], None
    return BatchBuffers(dict(zip(inputs, bufs)), labels)


def collate_samples(samples: Sequence[Sample]) -> Batch:
    """Stack a list of samples into a batch (see docs/architecture.md).

    Modalities listed in a sample's ``"lengths"`` are zero-padded along their
    variable axis (the first axis, or the last for waveforms) to the longest
    in the batch; their lengths come back as ``LongTensor[B]``.

    Inside a DataLoader worker (``get_worker_info()`` is set) the batch's tensors
    are written straight into shared memory, as ``default_collate`` does, so the
    batch is not copied again on its way to the main process -- all of them in
    one storage, so that it travels as one file descriptor; the values are the
    same as in the main process. When ``samples`` are :class:`BufferedSamples`, a
    modality whose samples are, in order, the rows of its buffer collates to that
    buffer, without a copy: same values.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    names = list(samples[0]["inputs"])
    length_names = list(samples[0].get("lengths", {}) or {})
    plans: list[tuple[str, list[Tensor], int | None]] = []  # (name, tensors, padded axis or None)
    lens: dict[str, list[int]] = {}
    for name in names:
        tensors = [torch.as_tensor(s["inputs"][name]) for s in samples]
        if name in length_names:
            lens[name] = [int(s["lengths"][name]) for s in samples]
            plans.append((name, tensors, _variable_axis(name, tensors, lens[name])))
        else:
            sample_shapes = {tuple(t.shape) for t in tensors}
            if len(sample_shapes) > 1:
                raise ValueError(
                    f"modality {name!r} has samples of different shapes {sorted(sample_shapes)[:3]} "
                    "but no lengths; declare it variable-length"
                )
            plans.append((name, tensors, None))
    small: dict[str, Any] = {"labels": [int(s["label"]) for s in samples]}  # lists, then tensors
    small.update({f"lengths/{name}": v for name, v in lens.items()})
    for key in ("index", "tag"):
        if key in samples[0]:
            small[key] = [int(s[key]) for s in samples]

    inputs: dict[str, Tensor] = {}
    buffers = samples.buffers if isinstance(samples, BufferedSamples) else None
    if buffers is not None:
        for name, tensors, axis in plans:
            if axis is None and buffers.holds_rows(name, tensors):
                inputs[name] = buffers[name]
    rest = [p for p in plans if p[0] not in inputs]
    out: dict[str, Tensor] = {}
    if buffers is not None and not rest and buffers.labels is not None:
        out["labels"] = buffers.labels  # the labels' place in the buffers' storage
    shapes = {}
    for name, tensors, axis in rest:
        if axis is None:
            dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
            shapes[name] = ((len(tensors), *tensors[0].shape), dtype)
        else:
            shapes[name] = (_padded_shape(tensors, axis), tensors[0].dtype)
    shapes.update({key: ((len(samples),), torch.long) for key in small if key not in out})
    if shapes and get_worker_info() is not None and all(t.device.type == "cpu" for _, ts, _ in rest for t in ts):
        out.update(zip(shapes, _in_one_storage(list(shapes.values()), shared=True)))
    for name, tensors, axis in rest:
        if name not in out:
            inputs[name] = torch.stack(tensors) if axis is None else pad_stack(tensors, axis)
        elif axis is None:
            inputs[name] = torch.stack(tensors, out=out[name])
        else:
            inputs[name] = _pad_into(out[name].zero_(), tensors, axis)
    for key, values in small.items():
        small[key] = out[key].copy_(torch.tensor(values)) if key in out else torch.tensor(values, dtype=torch.long)
    batch: Batch = {"inputs": {name: inputs[name] for name in names}, "labels": small["labels"],
                    "lengths": {name: small[f"lengths/{name}"] for name in lens}}
    if "index" in small:
        batch["index"] = small["index"]
    if "tag" in small:
        batch["tag"] = small["tag"]
    return batch


def _variable_axis(name: str, tensors: Sequence[Tensor], lens: Sequence[int]) -> int:
    """The per-sample axis whose size is the declared length: the first, else the last."""
    for axis in (0, tensors[0].dim() - 1):
        if all(t.shape[axis] >= n for t, n in zip(tensors, lens)) and any(
            t.shape[axis] == n for t, n in zip(tensors, lens)
        ):
            return axis
    raise ValueError(f"modality {name!r}: lengths {list(lens)[:4]} fit neither the first nor the last axis")
