"""Audio I/O and the audio features of the paper pipelines, with torch/numpy (no torchaudio).

* :func:`read_wav` -- WAV via soundfile, float32 mono in [-1, 1], bad input raises :class:`DataError`.
* :func:`resample` -- windowed-sinc (Hann) band-limited resampling, polyphase, written here.
* :func:`cremad_spectrogram` -- 22,050 Hz, tiled to 3 s, clipped, STFT 512/353, log -> (1, 257, 188).
* :func:`vggsound_waveform` / :func:`vggsound_spectrogram` -- 16 kHz tiled to 10 s; a 5 s crop
  (random in training with an explicit generator, centred in evaluation), STFT 256/128, log.
* :func:`kaldi_fbank` / :func:`kinetics_fbank` -- Kaldi-style log-mel filterbank, 128 bins,
  25 ms / 10 ms, padded or cropped to 1,024 frames, normalised (x + 4.503877) / (2 * 5.141276).
"""

from __future__ import annotations

import functools
import math
from os import PathLike

import numpy as np
import torch
from torch import Tensor

from ..validation import check_number, check_positive_int
from .errors import DataError

#: Added before the logarithm of a magnitude spectrogram, as in the paper's pipeline.
LOG_EPS = 1e-7

CREMAD_RATE = 22050
CREMAD_SECONDS = 3.0
VGGSOUND_RATE = 16000
VGGSOUND_TILE_SECONDS = 10.0
VGGSOUND_CROP_SECONDS = 5.0
KINETICS_RATE = 16000
KINETICS_FRAMES = 1024
KINETICS_MEAN = -4.503877
KINETICS_STD = 5.141276


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


# --------------------------------------------------------------------------- reading


def read_wav(path: str | PathLike, *, expected_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV as float32 mono in [-1, 1] (channels averaged); returns ``(samples, rate)``.

    Raises :class:`DataError` naming the file when it is missing, empty, truncated or
    undecodable, has a rate other than ``expected_rate``, more than 2 channels, or NaN/inf.
    """
    import os

    import soundfile as sf

    p = os.fspath(path)
    if not os.path.exists(p):
        raise DataError(p, "missing", "audio file not found")
    if os.path.getsize(p) == 0:
        raise DataError(p, "empty", "audio file is empty (0 bytes)")
    try:
        with sf.SoundFile(p) as f:
            rate = int(f.samplerate)
            declared = f.frames
            data = f.read(dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/ValueError
        raise DataError(p, "undecodable", f"cannot decode WAV ({exc})") from exc
    if data.shape[0] == 0:
        raise DataError(p, "empty", "audio file holds no samples")
    if declared > 0 and data.shape[0] < declared:
        raise DataError(p, "truncated", f"truncated: {data.shape[0]} of {declared} frames")
    missing = _riff_missing_bytes(p)
    if missing:
        raise DataError(p, "truncated", f"truncated: the data chunk lacks {missing} byte(s)")
    if data.shape[1] > 2:
        raise DataError(p, "shape", f"expected mono or stereo audio, got {data.shape[1]} channels")
    if expected_rate is not None and rate != expected_rate:
        raise DataError(p, "sample_rate", f"sample rate {rate} Hz, expected {expected_rate} Hz")
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    check_finite(samples, p)
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def _riff_missing_bytes(path: str) -> int:
    """Bytes a RIFF/WAVE file's ``data`` chunk declares beyond the end of the file (0 if whole,
    not RIFF, or of unknown size as written by streaming tools)."""
    import os
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if n in (0, 0xFFFFFFFF):
                    return 0
                return max(0, pos + 8 + n - size)
            pos += 8 + n + (n & 1)
    return 0


def check_finite(array, path=None, what: str = "audio") -> None:
    """Raise :class:`DataError` (kind ``non_finite``) if ``array`` holds NaN or inf."""
    a = array.numpy() if isinstance(array, Tensor) else np.asarray(array)
    if np.isfinite(a.sum(dtype=np.float64)):  # one pass; NaN/inf propagate into the sum
        return
    if not np.isfinite(a).all():
        n = int((~np.isfinite(a)).sum())
        raise DataError(path, "non_finite", f"{what} holds {n} NaN/inf value(s)")


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM to float32 in [-1, 1) (divide by 32768)."""
    return (np.asarray(samples, dtype=np.int16).astype(np.float32)) / 32768.0


# --------------------------------------------------------------------------- resampling


def _check_rate(field: str, value) -> int:
    return check_number(field, value, integer=True, lo=1, unit=" (Hz)")


def sinc_kernel(d, cutoff: float, width: int):
    """The resampling kernel at offsets ``d`` (input samples), float64 numpy or torch.

    ``h(d) = c * sinc(c * d) * cos^2(pi * d / (2 W))`` for ``|d| <= W = width / c``, else 0,
    with ``c`` the cutoff as a fraction of the input Nyquist rate and ``sinc(x) = sin(pi x)/(pi x)``.
    """
    lib = torch if isinstance(d, Tensor) else np
    half = width / cutoff
    window = lib.where(lib.abs(d) <= half, lib.cos(math.pi * d / (2 * half)) ** 2, 0.0 * d)
    return cutoff * lib.sinc(cutoff * d) * window


@functools.lru_cache(maxsize=16)
def _polyphase_kernel(up: int, down: int, cutoff: float, width: int) -> Tensor:
    """``(up, 1, taps)`` float64 conv weights: row p, tap t holds ``h(p * down / up - (t - k))``."""
    k = math.ceil(width / cutoff)
    taps = 2 * k + down + 1
    phases = torch.arange(up, dtype=torch.float64)[:, None] * down / up
    offsets = phases - (torch.arange(taps, dtype=torch.float64)[None, :] - k)
    return sinc_kernel(offsets, cutoff, width)[:, None, :]


def resample(
    waveform, orig_rate: int, new_rate: int, *, width: int = 6, rolloff: float = 0.99
) -> Tensor:
    """Band-limited resampling of ``(..., L)`` from ``orig_rate`` to ``new_rate`` Hz.

    Output sample ``j`` (at time ``j / new_rate``) is ``sum_i x[i] h(j * orig/new - i)``
    with :func:`sinc_kernel`, cutoff ``c = rolloff * min(orig, new) / orig`` and ``width``
    zero crossings each side; ``ceil(L * new / orig)`` samples come back. Polyphase: with
    ``up/down = new/orig`` reduced, output ``j = up * m + p`` is a strided (``down``)
    convolution of the input with the kernel of phase ``p``; the phases are interleaved.
    """
    orig_rate = _check_rate("orig_rate", orig_rate)
    new_rate = _check_rate("new_rate", new_rate)
    check_positive_int("width", width)
    if not 0 < rolloff <= 1:
        raise ValueError(f"rolloff must be in (0, 1], got {rolloff!r}")
    x = torch.as_tensor(waveform)
    if not x.is_floating_point():
        x = x.float()
    if orig_rate == new_rate:
        return x.clone()
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g  # output phases, input stride
    cutoff = rolloff * min(orig_rate, new_rate) / orig_rate
    k = math.ceil(width / cutoff)
    taps = 2 * k + down + 1
    kernel = _polyphase_kernel(up, down, cutoff, width).to(x.dtype)

    length = x.shape[-1]
    out_len = math.ceil(length * up / down)
    steps = math.ceil(out_len / up)
    lead = x.shape[:-1]
    flat = x.reshape(-1, 1, length)
    right = max(0, (steps - 1) * down + taps - (length + k))
    flat = torch.nn.functional.pad(flat, (k, right))
    y = torch.nn.functional.conv1d(flat, kernel, stride=down)[..., :steps]  # (N, up, steps)
    y = y.transpose(1, 2).reshape(flat.shape[0], -1)[:, :out_len]
    return y.reshape(*lead, out_len)


# --------------------------------------------------------------------------- paper pipelines


def tile_to(waveform: Tensor, length: int) -> Tensor:
    """Repeat ``(..., L)`` along the last axis until it has ``length`` samples (then crop)."""
    x = torch.as_tensor(waveform)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("cannot tile an empty waveform")
    reps = math.ceil(length / n)
    return x.repeat(*([1] * (x.dim() - 1)), reps)[..., :length]


def cremad_spectrogram(
    waveform, sample_rate: int, *, seconds: float = CREMAD_SECONDS, rate: int = CREMAD_RATE
) -> Tensor:
    """CREMA-D pipeline: resample to 22,050 Hz, tile to 3 s, clip to [-1, 1], STFT 512/353, log.

    Returns float32 ``(1, 257, 188)`` for the defaults (AVE uses ``seconds=10`` -> 257 x 625).
    """
    x = resample(torch.as_tensor(waveform, dtype=torch.float32), sample_rate, rate)
    x = tile_to(x, int(round(seconds * rate))).clamp(-1.0, 1.0)
    return log_spectrogram(x, n_fft=512, hop_length=353).unsqueeze(0).float()


def vggsound_waveform(waveform, sample_rate: int) -> Tensor:
    """VGGSound preprocessing kept in the cache: 16 kHz, tiled (repeated) to exactly 10 s."""
    x = resample(torch.as_tensor(waveform, dtype=torch.float32), sample_rate, VGGSOUND_RATE)
    return tile_to(x, int(VGGSOUND_TILE_SECONDS * VGGSOUND_RATE)).float()


def vggsound_spectrogram(
    waveform_16k, *, train: bool, generator: torch.Generator | None = None
) -> Tensor:
    """A 5 s crop of a :func:`vggsound_waveform`, clipped, STFT 256/128, log -> ``(1, 129, 626)``.

    Training: crop start uniform in ``[0, len - 5 s]`` drawn from ``generator`` (required);
    evaluation: the centred crop.
    """
    x = torch.as_tensor(waveform_16k, dtype=torch.float32)
    crop = int(VGGSOUND_CROP_SECONDS * VGGSOUND_RATE)
    if x.shape[-1] < crop:
        x = tile_to(x, crop)
    span = x.shape[-1] - crop
    if train:
        if generator is None:
            raise ValueError("generator is required for the random crop (train=True)")
        start = int(torch.randint(0, span + 1, (1,), generator=generator))
    else:
        start = span // 2
    x = x[..., start:start + crop].clamp(-1.0, 1.0)
    return log_spectrogram(x, n_fft=256, hop_length=128).unsqueeze(0).float()


def mel_scale(freq):
    """Kaldi's mel scale ``1127 ln(1 + f / 700)``."""
    lib = torch if isinstance(freq, Tensor) else np
    return 1127.0 * lib.log(1.0 + freq / 700.0)


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0
) -> Tensor:
    """Triangular mel filters ``(num_bins, padded_window // 2 + 1)`` as Kaldi builds them.

    Triangles are linear in mel, centres equally spaced between ``mel(low_freq)`` and
    ``mel(high_freq)`` (``high_freq <= 0`` is relative to Nyquist); the Nyquist column is 0.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq += nyquist
    if not 0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, {high_freq}")
    n_fft_bins = padded_window // 2
    mel_low, mel_high = mel_scale(torch.tensor(low_freq, dtype=torch.float64)), mel_scale(
        torch.tensor(high_freq, dtype=torch.float64)
    )
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, centre, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = mel_scale(torch.arange(n_fft_bins, dtype=torch.float64) * sample_rate / padded_window)[None]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def kaldi_fbank(
    waveform,
    sample_rate: int,
    *,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> Tensor:
    """Kaldi-style log-mel filterbank ``(frames, num_mel_bins)`` of a 1-D waveform.

    Per frame (``snip_edges``: ``1 + (L - W) // S`` frames, W/S the window/shift in samples):
    remove the DC offset, pre-emphasise (``x[i] - 0.97 x[i-1]``, ``x[-1] := x[0]``), multiply by
    the symmetric Hann window ``0.5 - 0.5 cos(2 pi n / (W - 1))``, zero-pad to the next power of
    two, power spectrum, mel filters (:func:`kaldi_mel_banks`), ``log(max(e, float32 eps))``.
    No dither, no energy term.
    """
    x = torch.as_tensor(waveform)
    if x.dim() != 1:
        raise ValueError(f"waveform must be 1-D, got shape {tuple(x.shape)}")
    x = x.to(torch.float32) if not x.is_floating_point() else x
    win = int(round(sample_rate * frame_length_ms / 1000.0))
    shift = int(round(sample_rate * frame_shift_ms / 1000.0))
    if x.shape[0] < win:
        raise ValueError(f"waveform of {x.shape[0]} samples is shorter than one window ({win})")
    padded = 1 << (win - 1).bit_length()
    frames = x.unfold(0, win, shift)  # (N, win)
    frames = frames - frames.mean(dim=1, keepdim=True)
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - preemphasis * prev
    n = torch.arange(win, dtype=x.dtype)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (win - 1))
    frames = torch.nn.functional.pad(frames * window, (0, padded - win))
    power = torch.fft.rfft(frames).abs() ** 2
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq).to(x.dtype)
    energy = power @ banks.T
    return torch.log(torch.clamp(energy, min=torch.finfo(torch.float32).eps))


def kinetics_fbank(waveform, sample_rate: int, *, target_frames: int = KINETICS_FRAMES) -> Tensor:
    """Kinetics-Sounds pipeline: 16 kHz, mean removed, 128-bin :func:`kaldi_fbank`, zero-padded
    or cropped to 1,024 frames, normalised ``(x - (-4.503877)) / (2 * 5.141276)`` -> ``(1, 128, 1024)``.
    """
    x = resample(torch.as_tensor(waveform, dtype=torch.float32), sample_rate, KINETICS_RATE)
    x = x - x.mean()
    fb = kaldi_fbank(x, KINETICS_RATE, num_mel_bins=128)
    n = fb.shape[0]
    if n < target_frames:
        fb = torch.nn.functional.pad(fb, (0, 0, 0, target_frames - n))
    else:
        fb = fb[:target_frames]
    fb = (fb - KINETICS_MEAN) / (2 * KINETICS_STD)
    return fb.T.unsqueeze(0).contiguous().float()
