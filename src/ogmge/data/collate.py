"""Batching of samples ``{"inputs", "label", "lengths"}`` into padded batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

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


def _shared_outputs(plans: Sequence[tuple[str, list[Tensor], int | None]]) -> dict[str, Tensor] | None:
    """Uninitialised output tensors of the input modalities, each on its own storage in shared
    memory, as ``default_collate`` allocates them in a DataLoader worker: the worker then sends
    a handle instead of first copying the batch into shared memory (``None`` when an input is
    not on the CPU)."""
    out = {}
    for name, tensors, axis in plans:
        if any(t.device.type != "cpu" for t in tensors):
            return None
        if axis is None:
            dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
            shape = (len(tensors), *tensors[0].shape)
        else:
            dtype, shape = tensors[0].dtype, _padded_shape(tensors, axis)
        like = torch.empty(0, dtype=dtype)
        storage = torch.UntypedStorage._new_shared(max(1, math.prod(shape) * like.element_size()))
        out[name] = like.set_(storage, 0, shape)
    return out


def collate_samples(samples: Sequence[dict]) -> dict:
    """Stack a list of samples into a batch (see docs/architecture.md).

    Modalities listed in a sample's ``"lengths"`` are zero-padded along their
    variable axis (the first axis, or the last for waveforms) to the longest
    in the batch; their lengths come back as ``LongTensor[B]``.

    Inside a DataLoader worker (``get_worker_info()`` is set) the stacked inputs
    are written straight into shared memory, as ``default_collate`` does, so the
    batch is not copied again on its way to the main process; the values are
    the same as in the main process.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    names = list(samples[0]["inputs"])
    length_names = list(samples[0].get("lengths", {}) or {})
    plans: list[tuple[str, list[Tensor], int | None]] = []  # (name, tensors, padded axis or None)
    lengths: dict[str, Tensor] = {}
    for name in names:
        tensors = [torch.as_tensor(s["inputs"][name]) for s in samples]
        if name in length_names:
            lens = [int(s["lengths"][name]) for s in samples]
            plans.append((name, tensors, _variable_axis(name, tensors, lens)))
            lengths[name] = torch.tensor(lens, dtype=torch.long)
        else:
            shapes = {tuple(t.shape) for t in tensors}
            if len(shapes) > 1:
                raise ValueError(
                    f"modality {name!r} has samples of different shapes {sorted(shapes)[:3]} "
                    "but no lengths; declare it variable-length"
                )
            plans.append((name, tensors, None))
    shared = _shared_outputs(plans) if get_worker_info() is not None else None
    inputs: dict[str, Tensor] = {}
    for name, tensors, axis in plans:
        if shared is None:
            inputs[name] = torch.stack(tensors) if axis is None else pad_stack(tensors, axis)
        elif axis is None:
            inputs[name] = torch.stack(tensors, out=shared[name])
        else:
            inputs[name] = _pad_into(shared[name].zero_(), tensors, axis)
    labels = torch.tensor([int(s["label"]) for s in samples], dtype=torch.long)
    batch = {"inputs": inputs, "labels": labels, "lengths": lengths}
    if "index" in samples[0]:
        batch["index"] = torch.tensor([int(s["index"]) for s in samples], dtype=torch.long)
    return batch


def _variable_axis(name: str, tensors: Sequence[Tensor], lens: Sequence[int]) -> int:
    """The per-sample axis whose size is the declared length: the first, else the last."""
    for axis in (0, tensors[0].dim() - 1):
        if all(t.shape[axis] >= n for t, n in zip(tensors, lens)) and any(
            t.shape[axis] == n for t, n in zip(tensors, lens)
        ):
            return axis
    raise ValueError(f"modality {name!r}: lengths {list(lens)[:4]} fit neither the first nor the last axis")
