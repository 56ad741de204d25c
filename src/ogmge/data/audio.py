"""Audio features of the paper pipelines, computed with torch (no torchaudio)."""

from __future__ import annotations

import torch
from torch import Tensor

#: Added before the logarithm of a magnitude spectrogram, as in the paper's pipeline.
LOG_EPS = 1e-7


def log_spectrogram(waveform: Tensor, *, n_fft: int, hop_length: int) -> Tensor:
    """``log(|STFT(x)| + 1e-7)`` with a Hann window of ``n_fft`` and centred frames.

    ``waveform`` is ``(L,)`` (or ``(..., L)``); the result is ``(..., n_fft // 2 + 1, frames)``
    with ``frames = 1 + L // hop_length`` (CREMA-D: 3 s at 22,050 Hz, n_fft 512, hop 353 -> 257 x 188).
    """
    x = torch.as_tensor(waveform)
    if not x.is_floating_point():
        raise TypeError(f"waveform must be floating point, got {x.dtype}")
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x, n_fft=n_fft, hop_length=hop_length, window=window, center=True,
        pad_mode="constant", return_complex=True,
    )
    return torch.log(spec.abs() + LOG_EPS)
