"""Image transforms on tensors and PyAV decoding (1 fps frames, 16-bit mono audio)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ogmge.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    frames_to_tensor,
    hflip,
    normalize,
    random_resized_crop,
    random_resized_crop_box,
    resize,
    train_transform,
)
from ogmge.data.video import decode_video, resize_shorter
from support.paper_rawdata import write_video


def test_random_resized_crop_box_bounds_and_seeding():
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        top, left, h, w = random_resized_crop_box(360, 480, generator=g)
        assert 0 <= top and top + h <= 360 and 0 <= left and left + w <= 480
        area = h * w / (360 * 480)
        assert 0.07 <= area <= 1.0 and 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    a = random_resized_crop_box(360, 480, generator=torch.Generator().manual_seed(7))
    b = random_resized_crop_box(360, 480, generator=torch.Generator().manual_seed(7))
    assert a == b


def test_crop_resize_flip_normalise():
    img = torch.arange(2 * 3 * 40 * 60, dtype=torch.float32).reshape(2, 3, 40, 60) / (2 * 3 * 40 * 60)
    out = random_resized_crop(img, 24, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 24, 24)
    assert resize(img, (10, 12)).shape == (2, 3, 10, 12)
    const = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    assert torch.allclose(resize(const, 4), torch.full((3, 4, 4), 128 / 255))
    torch.testing.assert_close(hflip(img)[..., 0], img[..., -1])
    n = normalize(torch.ones(3, 2, 2))
    for c in range(3):
        assert torch.allclose(n[c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    u8 = frames_to_tensor(np.zeros((3, 30, 40, 3), np.uint8))
    assert u8.shape == (3, 3, 30, 40) and u8.dtype == torch.uint8
    assert eval_transform(u8, 16).shape == (3, 3, 16, 16)
    a = train_transform(u8, 16, generator=torch.Generator().manual_seed(1))
    b = train_transform(u8, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="size"):
        resize(img, 0)


@pytest.mark.parametrize("suffix", [".mp4", ".flv"])
def test_decode_video_one_fps_and_pcm16(tmp_path, suffix):
    rate = 16000 if suffix == ".mp4" else 22050  # FLV stores only 5.5/11/22/44 kHz
    path = write_video(tmp_path / f"v{suffix}", seconds=3.0, fps=5, rate=rate)
    dec = decode_video(path)
    assert dec.frames.shape == (3, 32, 48, 3) and dec.frames.dtype == np.uint8
    levels = dec.frames.reshape(3, -1).mean(1)
    np.testing.assert_allclose(levels, [0, 50, 100], atol=4)  # frames at t = 0, 1, 2 s
    assert dec.sample_rate == rate and dec.audio.dtype == np.int16
    assert abs(dec.audio.size - 3 * rate) <= 2048
    assert np.abs(dec.audio).max() > 1000


def test_resize_shorter_side():
    assert resize_shorter(np.zeros((360, 480, 3), np.uint8)).shape == (256, 341, 3)
    assert resize_shorter(np.zeros((100, 50, 3), np.uint8)).shape == (512, 256, 3)
