"""Image transforms of the paper pipelines on tensors (no torchvision).

Frames are ``(T, 3, H, W)`` or ``(3, H, W)`` (uint8 or float in [0, 1]), or ``(T, H, W, 3)``
uint8 arrays from the cache via :func:`frames_to_tensor`. Training: a random resized crop to
224 (scale (0.08, 1), ratio (3/4, 4/3), the same crop for every frame of a clip) and a
horizontal flip with probability 1/2; evaluation: a resize to 224 x 224. Both end with
ImageNet mean/std normalisation, or, with ``normalize=False``, return the resized frames as they
are (uint8 for uint8 input, contiguous ``(..., 3, S, S)``) so the normalisation can run later on
a whole batch (``ogmge.models.VisualEncoder`` normalises uint8 input itself). Every random draw
comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list)) or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def frames_to_tensor(frames) -> Tensor:
    """``(T, H, W, 3)`` uint8 array (or one ``(H, W, 3)`` image) -> ``(T, 3, H, W)`` uint8 tensor."""
    a = np.asarray(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _as_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _resize_native(x: Tensor, size) -> Tensor:
    """Resize ``(..., C, H, W)`` keeping uint8 as uint8 (channels-last: torch's fast path)."""
    h, w = _check_size(size)
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])
    if x.dtype == torch.uint8:
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = x.float()
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return y.reshape(*lead, *y.shape[-3:])


def resize(images: Tensor, size=224) -> Tensor:
    """Bilinear (antialiased) resize of ``(..., C, H, W)`` to ``size``; float out (uint8 input
    is resized in uint8, as PIL does, then scaled to [0, 1])."""
    return _as_float(_resize_native(torch.as_tensor(images), size))


def random_resized_crop_box(
    height: int, width: int, *, generator: torch.Generator,
    scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop with area fraction in ``scale`` and aspect in ``ratio``
    (log-uniform), tried ``attempts`` times, else the central crop clamped to ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = min(int(u[2] * (height - h + 1)), height - h)
            left = min(int(u[3] * (width - w + 1)), width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _crop(x: Tensor, size, generator, scale, ratio) -> Tensor:
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale!r}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio!r}")
    top, left, h, w = random_resized_crop_box(x.shape[-2], x.shape[-1], generator=generator, scale=scale, ratio=ratio)
    return _resize_native(x[..., top:top + h, left:left + w], size)


def random_resized_crop(
    images: Tensor, size=224, *, generator: torch.Generator,
    scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
) -> Tensor:
    """One random crop box (see :func:`random_resized_crop_box`) for all of ``(..., C, H, W)``,
    resized to ``size`` -> float in [0, 1]. Crops before converting, so uint8 input stays cheap."""
    return _as_float(_crop(torch.as_tensor(images), size, generator, scale, ratio))


def hflip(images: Tensor) -> Tensor:
    """Mirror ``(..., H, W)`` left-right."""
    return torch.as_tensor(images).flip(-1)


def normalize(images: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Tensor:
    """``(x - mean) / std`` per channel of ``(..., 3, H, W)`` float images in [0, 1]
    (uint8 images are read as ``x / 255``, in the same single pass)."""
    x = torch.as_tensor(images)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    if x.dtype == torch.uint8:
        return x.contiguous().float().mul_(1.0 / (255.0 * s)).add_(-m / s)
    return (x.float() - m) / s


def resize_into(out: Tensor, images: Tensor, *, flip: bool = False) -> Tensor:
    """Write ``images`` ``(..., 3, h, w)`` (uint8), resized to ``out``'s ``(..., 3, S, S)`` and
    mirrored when ``flip``, into ``out``: as they are into uint8, ImageNet-normalised into float32
    -- the values of :func:`train_transform` / :func:`eval_transform` (``normalize`` = ``out`` is
    float32) for the same crop and flip. Returns ``out``."""
    x = _resize_native(images, tuple(out.shape[-2:]))
    if flip:
        x = hflip(x)
    out.copy_(x)
    if out.dtype != torch.uint8:
        if x.dtype != torch.uint8:
            raise ValueError("resize_into normalises uint8 images only")
        s = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
        m = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
        out.mul_(1.0 / (255.0 * s)).add_(-m / s)  # the arithmetic of normalize(), in place
    return out


def _finish(x: Tensor, normalize_: bool) -> Tensor:
    # uint8 resizes come back channels-last; hand out the standard contiguous layout
    return normalize(x) if normalize_ else x.contiguous()


def train_transform(images: Tensor, size=224, *, generator: torch.Generator, normalize: bool = True) -> Tensor:
    """Paper training transform: random resized crop, horizontal flip (p = 0.5), normalise.

    ``normalize=False`` skips the last step: uint8 input then gives uint8 frames (the same
    draws, so normalising them afterwards gives this function's normalised output)."""
    x = _crop(torch.as_tensor(images), size, generator, (0.08, 1.0), (3 / 4, 4 / 3))
    if float(torch.rand((), generator=generator)) < 0.5:
        x = hflip(x)
    return _finish(x, normalize)


def eval_transform(images: Tensor, size=224, *, normalize: bool = True) -> Tensor:
    """Paper evaluation transform: resize to ``size`` x ``size``, normalise (unless ``normalize=False``:
    uint8 input then gives uint8 frames)."""
    return _finish(_resize_native(torch.as_tensor(images), size), normalize)
