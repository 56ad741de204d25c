"""Batching of samples ``{"inputs", "label", "lengths"}`` into padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_stack(tensors: Sequence[Tensor], axis: int) -> Tensor:
    """Stack tensors that differ only along ``axis`` (per-sample), zero-padding to the longest."""
    longest = max(t.shape[axis] for t in tensors)
    out_shape = list(tensors[0].shape)
    out_shape[axis] = longest
    out = tensors[0].new_zeros((len(tensors), *out_shape))
    for i, t in enumerate(tensors):
        out[i].narrow(axis, 0, t.shape[axis]).copy_(t)
    return out


def collate_samples(samples: Sequence[dict]) -> dict:
    """Stack a list of samples into a batch (see docs/architecture.md).

    Modalities listed in a sample's ``"lengths"`` are zero-padded along their
    variable axis (the first axis, or the last for waveforms) to the longest
    in the batch; their lengths come back as ``LongTensor[B]``.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    names = list(samples[0]["inputs"])
    length_names = list(samples[0].get("lengths", {}) or {})
    inputs: dict[str, Tensor] = {}
    lengths: dict[str, Tensor] = {}
    for name in names:
        tensors = [torch.as_tensor(s["inputs"][name]) for s in samples]
        if name in length_names:
            lens = [int(s["lengths"][name]) for s in samples]
            axis = _variable_axis(name, tensors, lens)
            inputs[name] = pad_stack(tensors, axis)
            lengths[name] = torch.tensor(lens, dtype=torch.long)
        else:
            shapes = {tuple(t.shape) for t in tensors}
            if len(shapes) > 1:
                raise ValueError(
                    f"modality {name!r} has samples of different shapes {sorted(shapes)[:3]} "
                    "but no lengths; declare it variable-length"
                )
            inputs[name] = torch.stack(tensors)
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
