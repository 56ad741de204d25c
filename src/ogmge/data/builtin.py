"""Built-in default dataset: procedurally generated audio-visual data, no downloads.

Two modalities of six classes, made from raw signals and passed through the
real feature paths:

* ``"audio"``: a 0.5 s waveform at 8 kHz (4,000 samples) holding a harmonic tone
  whose fundamental depends on the class, in a random time window, in white noise, turned
  into a log-magnitude spectrogram by :func:`ogmge.data.audio.log_spectrogram`
  (``n_fft`` 126, hop 63) -> kind ``spectrogram``, shape ``(1, 64, 64)``;
* ``"visual"``: ``frames`` (default 2) RGB frames of 32 x 32 pixels showing a
  drifting sinusoidal grating whose orientation depends on the class, on a random
  background in pixel noise, quantised to 8 bits (uint8, like decoded frames) and
  normalised with the ImageNet mean/std by the real frames' path,
  :func:`ogmge.data.transforms.normalize` -> kind ``video``, shape ``(2, 3, 32, 32)``.

``imbalance`` is the ratio of the audio tone's amplitude SNR (tone amplitude /
noise std) to the visual grating's (contrast / pixel-noise std). The visual
SNR is fixed; raising ``imbalance`` makes audio easier (0 removes the audio cue).
At the default (:data:`DEFAULT_IMBALANCE`) audio is learnt much faster than the
visual cue, so in joint training the visual encoder is starved (measured in
``benchmarks/imbalance_gap.py``; figures in docs/data.md).

Sizes (``num_samples=None``): train 1,500, val 300, test 600, classes balanced.
Each split draws from its own random stream (``seed`` and the split's name), so
splits never share samples and the data are bit-identical for a given seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .audio import log_spectrogram
from .byo import ArrayDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize  # noqa: F401  (constants re-exported)

NUM_CLASSES = 6
CLASS_NAMES = ["c0", "c1", "c2", "c3", "c4", "c5"]
SIZES = {"train": 1500, "val": 300, "test": 600}
#: Fixed before any method was compared; do not tune to favour a method.
DEFAULT_IMBALANCE = 3.0
DEFAULT_SEED = 0
DEFAULT_FRAMES = 2

SAMPLE_RATE = 8000
AUDIO_SAMPLES = 4000
N_FFT = 126
HOP_LENGTH = 63
AUDIO_SHAPE = (1, N_FFT // 2 + 1, 1 + AUDIO_SAMPLES // HOP_LENGTH)  # (1, 64, 64)
IMAGE_SIZE = 32
#: Amplitude of the white noise in the waveform, and per-pixel noise std / grating contrast of the frames.
AUDIO_NOISE = 0.1
VISUAL_NOISE = 0.25
VISUAL_CONTRAST = 0.07
#: Fundamental (Hz) of each class's harmonic tone: harmonics 3, 4, ..., 8 STFT bins apart,
#: a local texture that a convolutional encoder with global pooling can see.
CLASS_F0 = tuple((3 + c) * SAMPLE_RATE / N_FFT for c in range(NUM_CLASSES))
HARMONICS = 12
#: Grating orientation (radians) of each class.
CLASS_ORIENTATIONS = tuple(math.pi * c / NUM_CLASSES for c in range(NUM_CLASSES))
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _check(name: str, value, *, minimum: float, integer: bool) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")


def make_builtin_dataset(
    split: str = "train",
    *,
    imbalance: float = DEFAULT_IMBALANCE,
    seed: int = DEFAULT_SEED,
    num_samples: int | None = None,
    frames: int = DEFAULT_FRAMES,
) -> ArrayDataset:
    """The built-in audio-visual dataset (see the module docstring for its content).

    split: ``"train"`` (1,500), ``"val"`` (300) or ``"test"`` (600 samples).
    imbalance: audio SNR / visual SNR (>= 0; 0 removes the audio cue).
    seed: base seed; with ``split`` it fixes every random draw.
    num_samples: override the split's size.
    frames: visual frames per sample (kind ``video``, ``(frames, 3, 32, 32)``).
    """
    if split not in SIZES:
        raise ValueError(f"split must be one of {tuple(SIZES)}, got {split!r}")
    _check("imbalance", imbalance, minimum=0, integer=False)
    _check("seed", seed, minimum=0, integer=True)
    _check("frames", frames, minimum=1, integer=True)
    if num_samples is not None:
        _check("num_samples", num_samples, minimum=1, integer=True)
    n = SIZES[split] if num_samples is None else num_samples
    root = np.random.SeedSequence([seed, _SPLIT_IDS[split]])
    label_ss, audio_ss, visual_ss = root.spawn(3)
    labels = _balanced_labels(n, np.random.default_rng(label_ss))
    audio = _audio(labels, imbalance, np.random.default_rng(audio_ss))
    visual = _visual(labels, frames, np.random.default_rng(visual_ss))
    return ArrayDataset(
        {"audio": audio, "visual": visual},
        labels,
        kinds={"audio": "spectrogram", "visual": "video"},
        class_names=CLASS_NAMES,
    )


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.arange(n) % NUM_CLASSES
    return rng.permutation(labels).astype(np.int64)


def make_waveforms(labels: np.ndarray, imbalance: float, rng: np.random.Generator) -> np.ndarray:
    """Raw waveforms ``(N, 4000)`` in [-1, 1]: a class harmonic tone in a random window, in noise."""
    n = len(labels)
    t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE
    f0 = np.asarray(CLASS_F0)[labels] * rng.uniform(0.97, 1.03, n)
    duration = rng.uniform(0.15, 0.35, n)
    onset = rng.uniform(0, 0.5 - duration)
    inside = (t[None, :] >= onset[:, None]) & (t[None, :] < (onset + duration)[:, None])
    amplitude = imbalance * (VISUAL_CONTRAST / VISUAL_NOISE) * AUDIO_NOISE
    tone = np.zeros((n, AUDIO_SAMPLES))
    for h in range(1, HARMONICS + 1):
        phase = rng.uniform(0, 2 * np.pi, n)
        audible = (h * f0 < 0.45 * SAMPLE_RATE)[:, None]
        tone += audible * np.sin(2 * np.pi * h * f0[:, None] * t[None, :] + phase[:, None])
    tone *= (amplitude * rng.uniform(0.5, 1.5, n))[:, None] * inside
    noise = rng.normal(0.0, AUDIO_NOISE, (n, AUDIO_SAMPLES))
    return np.clip(tone + noise, -1.0, 1.0).astype(np.float32)


def _audio(labels: np.ndarray, imbalance: float, rng: np.random.Generator) -> torch.Tensor:
    wave = torch.from_numpy(make_waveforms(labels, imbalance, rng))
    spec = log_spectrogram(wave, n_fft=N_FFT, hop_length=HOP_LENGTH)  # (N, 64, 64)
    return spec.unsqueeze(1).contiguous()


def make_frames(labels: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Raw 8-bit frames ``(N, T, 32, 32, 3)``: a drifting class-oriented grating in noise."""
    n = len(labels)
    ys, xs = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="ij")
    theta = np.asarray(CLASS_ORIENTATIONS)[labels] + rng.normal(0, math.radians(4), n)
    cycles = rng.uniform(3.0, 5.0, n) / IMAGE_SIZE
    phase0 = rng.uniform(0, 2 * np.pi, n)
    drift = rng.uniform(-1.0, 1.0, n)
    background = rng.uniform(0.35, 0.65, (n, 1, 1, 1, 3))
    proj = (np.cos(theta)[:, None, None] * xs + np.sin(theta)[:, None, None] * ys) * cycles[:, None, None]
    steps = np.arange(frames)
    phase = phase0[:, None] + drift[:, None] * steps[None, :]  # (N, T)
    grating = np.sin(2 * np.pi * proj[:, None] + phase[:, :, None, None])  # (N, T, H, W)
    contrast = VISUAL_CONTRAST * rng.uniform(0.5, 1.5, (n, 1, 1, 1))
    img = background + contrast[..., None] * grating[..., None]
    img = img + rng.normal(0.0, VISUAL_NOISE, img.shape)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _visual(labels: np.ndarray, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """The frames through the real visual path: uint8 ``(N, T, 3, H, W)`` ->
    :func:`ogmge.data.transforms.normalize` (``x / 255``, then ImageNet mean/std)."""
    raw = torch.from_numpy(make_frames(labels, frames, rng))  # uint8 (N, T, H, W, 3)
    return normalize(raw.permute(0, 1, 4, 2, 3)).contiguous()  # float32 (N, T, 3, H, W)
