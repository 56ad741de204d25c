"""Batching of samples ``{"inputs", "label", "lengths"}`` into padded batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import get_worker_info


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


def batch_buffers(size: int, inputs: dict[str, tuple[Sequence[int], torch.dtype]]) -> dict[str, Tensor]:
    """Uninitialised batch tensors ``(size, *shape)`` of each input ``name: (shape, dtype)``, for a
    dataset's batched fetch (``__getitems__``) to write its samples into. Samples whose inputs
    are, in order, the rows ``buf[0], ..., buf[size - 1]`` of these buffers collate
    (:func:`collate_samples`) to the buffers themselves, without a copy. In a DataLoader worker
    they live in shared memory, in one storage with room for the batch's labels (as
    :func:`collate_samples` lays a batch out there); elsewhere each is a plain tensor."""
    size = int(size)
    specs = [((size, *(int(n) for n in shape)), dtype) for shape, dtype in inputs.values()]
    if get_worker_info() is not None:
        *bufs, labels = _in_one_storage([*specs, ((size,), torch.long)], shared=True)
    else:
        bufs, labels = [torch.empty(shape, dtype=dtype) for shape, dtype in specs], None
    token = [labels]  # shared by the buffers of this batch (no reference back to them: no cycle)
    for buf in bufs:
        buf._ogmge_batch = token  # type: ignore[attr-defined]  # its rows collate to it; the labels go to ``token[0]``
    return dict(zip(inputs, bufs))


def _buffer_of(tensors: Sequence[Tensor]) -> Tensor | None:
    """The :func:`batch_buffers` buffer whose rows ``tensors`` are, in order, if any."""
    buf = tensors[0]._base
    if buf is None or getattr(buf, "_ogmge_batch", None) is None or buf.shape[0] != len(tensors):
        return None
    step, start = buf.stride(0), buf.storage_offset()
    for k, t in enumerate(tensors):
        if (t._base is not buf or t.storage_offset() != start + k * step or t.shape != buf.shape[1:]
                or t.dtype != buf.dtype or t.stride() != buf.stride()[1:]):
            return None
    return buf


def collate_samples(samples: Sequence[dict]) -> dict:
    """Stack a list of samples into a batch (see docs/architecture.md).

    Modalities listed in a sample's ``"lengths"`` are zero-padded along their
    variable axis (the first axis, or the last for waveforms) to the longest
    in the batch; their lengths come back as ``LongTensor[B]``.

    Inside a DataLoader worker (``get_worker_info()`` is set) the batch's tensors
    are written straight into shared memory, as ``default_collate`` does, so the
    batch is not copied again on its way to the main process -- all of them in
    one storage, so that it travels as one file descriptor; the values are the
    same as in the main process. A modality whose samples are, in order, the
    rows of a :func:`batch_buffers` buffer (a dataset's batched fetch wrote them
    there) collates to that buffer, without a copy: same values.
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
    if "index" in samples[0]:
        small["index"] = [int(s["index"]) for s in samples]

    inputs: dict[str, Tensor] = {}
    batches = set()
    for name, tensors, axis in plans:
        buf = _buffer_of(tensors) if axis is None else None
        if buf is not None:
            inputs[name] = buf
            batches.add(id(buf._ogmge_batch))  # type: ignore[attr-defined]
    rest = [p for p in plans if p[0] not in inputs]
    out: dict[str, Tensor] = {}
    if len(batches) == 1 and not rest and (slot := buf._ogmge_batch[0]) is not None:  # type: ignore[union-attr]
        out["labels"] = slot  # the labels' place in the buffers' storage
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
    batch = {"inputs": {name: inputs[name] for name in names}, "labels": small["labels"],
             "lengths": {name: small[f"lengths/{name}"] for name in lens}}
    if "index" in small:
        batch["index"] = small["index"]
    return batch


def _variable_axis(name: str, tensors: Sequence[Tensor], lens: Sequence[int]) -> int:
    """The per-sample axis whose size is the declared length: the first, else the last."""
    for axis in (0, tensors[0].dim() - 1):
        if all(t.shape[axis] >= n for t, n in zip(tensors, lens)) and any(
            t.shape[axis] == n for t, n in zip(tensors, lens)
        ):
            return axis
    raise ValueError(f"modality {name!r}: lengths {list(lens)[:4]} fit neither the first nor the last axis")
