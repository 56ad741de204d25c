"""Audio features against direct float64 numpy references of the same formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ogmge.data.audio import (
    KINETICS_MEAN,
    KINETICS_STD,
    cremad_spectrogram,
    kaldi_fbank,
    kinetics_fbank,
    read_wav,
    resample,
    tile_to,
    vggsound_spectrogram,
    vggsound_waveform,
)


def ref_resample(x: np.ndarray, orig: int, new: int, width: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """y[j] = sum_i x[i] h(j*orig/new - i), h = c sinc(c d) cos^2(pi d / 2W) on |d| <= W = width/c."""
    c = rolloff * min(orig, new) / orig
    half = width / c
    n_out = math.ceil(len(x) * new / orig)
    d = np.arange(n_out)[:, None] * orig / new - np.arange(len(x))[None, :]
    h = np.where(np.abs(d) <= half, c * np.sinc(c * d) * np.cos(np.pi * d / (2 * half)) ** 2, 0.0)
    return h @ x.astype(np.float64)


@pytest.mark.parametrize("orig,new", [(16000, 22050), (22050, 16000), (44100, 16000), (8000, 16000), (48000, 44100)])
def test_resample_matches_float64_reference(orig, new):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(901)
    ours64 = resample(torch.from_numpy(x), orig, new).numpy()
    ref = ref_resample(x, orig, new)
    assert ours64.shape == ref.shape == (math.ceil(901 * new / orig),)
    np.testing.assert_allclose(ours64, ref, rtol=0, atol=1e-10)
    ours32 = resample(torch.from_numpy(x).float(), orig, new).numpy()
    np.testing.assert_allclose(ours32, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_resample_keeps_a_tone_and_batches():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 440 * t)
    y = resample(torch.from_numpy(x), 16000, 22050).numpy()
    t2 = np.arange(y.size) / 22050
    inner = slice(200, -200)
    np.testing.assert_allclose(y[inner], np.sin(2 * np.pi * 440 * t2)[inner], atol=2e-3)
    two = resample(torch.from_numpy(np.stack([x, -x])), 16000, 22050)
    np.testing.assert_allclose(two[1].numpy(), -y, atol=1e-12)
    with pytest.raises(ValueError, match="new_rate"):
        resample(torch.zeros(10), 16000, 0)


def ref_fbank(x: np.ndarray, rate: int, bins: int = 128) -> np.ndarray:
    """Kaldi fbank in float64 with explicit loops over frames and mel bins."""
    win, shift = int(rate * 0.025), int(rate * 0.010)
    padded = 1 << (win - 1).bit_length()
    n_frames = 1 + (len(x) - win) // shift
    nyq = rate / 2

    def mel(f):
        return 1127.0 * np.log(1 + f / 700.0)

    lo, hi = mel(20.0), mel(nyq)
    delta = (hi - lo) / (bins + 1)
    banks = np.zeros((bins, padded // 2 + 1))
    for b in range(bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(padded // 2):
            m = mel(k * rate / padded)
            if left < m < right:
                banks[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    out = np.zeros((n_frames, bins))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))
    for i in range(n_frames):
        f = x[i * shift:i * shift + win].astype(np.float64)
        f = f - f.mean()
        f = np.concatenate([[f[0] - 0.97 * f[0]], f[1:] - 0.97 * f[:-1]])
        spec = np.abs(np.fft.rfft(np.concatenate([f * hann, np.zeros(padded - win)]))) ** 2
        out[i] = np.log(np.maximum(banks @ spec, np.finfo(np.float32).eps))
    return out


def test_kaldi_fbank_matches_float64_reference():
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal(16000 // 4)
    ours = kaldi_fbank(torch.from_numpy(x), 16000).numpy()
    ref = ref_fbank(x, 16000)
    assert ours.shape == ref.shape == (1 + (4000 - 400) // 160, 128)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    ours32 = kaldi_fbank(torch.from_numpy(x).float(), 16000).numpy()
    np.testing.assert_allclose(ours32, ref, rtol=0, atol=2e-3)


def test_kinetics_fbank_pads_and_normalises():
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    out = kinetics_fbank(x, 16000)
    assert out.shape == (1, 128, 1024)
    fb = kaldi_fbank(torch.from_numpy(x - x.mean()), 16000)
    n = fb.shape[0]
    torch.testing.assert_close(out[0, :, :n], ((fb - KINETICS_MEAN) / (2 * KINETICS_STD)).T, rtol=0, atol=1e-4)
    torch.testing.assert_close(out[0, :, n:], torch.full((128, 1024 - n), -KINETICS_MEAN / (2 * KINETICS_STD)))


def test_cremad_and_vggsound_pipelines():
    x = np.sin(np.arange(16000 * 1.2) / 7).astype(np.float32) * 1.5  # 1.2 s, out of [-1, 1]
    spec = cremad_spectrogram(x, 16000)
    assert spec.shape == (1, 257, 188) and spec.dtype == torch.float32
    wave = resample(torch.from_numpy(x), 16000, 22050)
    expect = torch.log(torch.stft(tile_to(wave, 66150).clamp(-1, 1), 512, 353, window=torch.hann_window(512),
                                  center=True, pad_mode="constant", return_complex=True).abs() + 1e-7)
    torch.testing.assert_close(spec[0], expect)
    w = vggsound_waveform(x, 16000)
    assert w.shape == (160000,)
    a = vggsound_spectrogram(w, train=True, generator=torch.Generator().manual_seed(5))
    b = vggsound_spectrogram(w, train=True, generator=torch.Generator().manual_seed(5))
    assert a.shape == (1, 129, 626) and torch.equal(a, b)
    centre = vggsound_spectrogram(w, train=False)
    manual = torch.log(torch.stft(w[40000:120000].clamp(-1, 1), 256, 128, window=torch.hann_window(256),
                                  center=True, pad_mode="constant", return_complex=True).abs() + 1e-7)
    torch.testing.assert_close(centre[0], manual)
    with pytest.raises(ValueError, match="generator"):
        vggsound_spectrogram(w, train=True)


def test_read_wav_mono_float(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, np.stack([np.full(100, 0.5), np.full(100, -0.25)], 1), 16000, subtype="PCM_16")
    x, rate = read_wav(p, expected_rate=16000)
    assert rate == 16000 and x.dtype == np.float32 and x.shape == (100,)
    np.testing.assert_allclose(x, 0.125, atol=1e-4)
