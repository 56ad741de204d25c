"""Built-in default dataset, version 2: procedurally generated, no downloads.

Six classes spoken by twelve speakers, each speaker with their own nuisance,
split by speaker (unseen speakers at validation and test time):

* speakers 0-7 are the ``train`` split, 8-9 ``val``, 10-11 ``test``
  (``dataset.groups`` holds the speaker of each sample, e.g. ``"s07"``);
* each speaker has a voice pitch offset, an audio background (a mains hum at
  their own frequency and level, and their own noise floor), a visual background
  colour and lighting (gain and colour tint), and a sensor offset;
* per sample the class cue is present in a modality with that modality's cue
  probability (:data:`P_AUDIO`, :data:`P_VISUAL`, :data:`P_SENSOR` in the
  regimes that have it; ``cue_prob`` overrides), independently across
  modalities; where it is absent the modality holds its nuisance and noise only
  (silence in the audio, an occluded patch in the frames, an offset-only
  sensor vector). ``dataset.cue_present[name]`` (bool tensor) says which samples
  carry the cue.

Modalities, made from raw signals through the real feature paths:

* ``"audio"``: a 0.5 s waveform at 8 kHz (4,000 samples) whose cue is a harmonic
  tone (fundamental 200 Hz x 1.25 ** class, times the speaker's pitch offset) in
  a random 0.2-0.4 s window; through :func:`ogmge.data.audio.log_spectrogram`
  (``n_fft`` 126, hop 126) -> kind ``spectrogram``, ``(1, 64, 32)``. The cue is
  easy: learnt in two or three epochs.
* ``"visual"``: ``frames`` (default 2) RGB frames of 32 x 32 pixels, quantised
  to 8 bits like decoded frames, normalised with the ImageNet mean/std by
  :func:`ogmge.data.transforms.normalize` -> kind ``video``,
  ``(frames, 3, 32, 32)``. The cue is a faint drifting grating whose orientation
  depends on the class, in a disc at a jittered position; where the cue is
  absent the disc is covered by a flat occluder. The cue is subtle: learnt
  slowly.
* ``"sensor"`` (regime ``paper3`` only): kind ``vector``, ``(16,)``: the
  speaker's offset plus unit noise, plus a class prototype when the cue is
  present.

Regimes (:data:`REGIMES`) fix the modalities and cue probabilities; ``paper``
is the default. The knobs were calibrated with unimodal runs and plain joint
training only (``benchmarks/builtin_calibration.py``, docs/data.md) and are
frozen: changing any of them is a new :data:`VERSION`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .arrays import ArrayDataset
from .audio import log_spectrogram
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize  # noqa: F401  (constants re-exported)

#: Generator version; recorded with every run (``builtin_identity``). Version 1 (until
#: issue 11) had redundant modalities and the ``imbalance`` knob.
VERSION = 2
NUM_CLASSES = 6
CLASS_NAMES = ["c0", "c1", "c2", "c3", "c4", "c5"]
DEFAULT_SEED = 0
DEFAULT_FRAMES = 2
DEFAULT_REGIME = "paper"

#: Speakers of each split (speaker-independent splits).
SPEAKERS = 12
SPLIT_SPEAKERS = {"train": tuple(range(8)), "val": (8, 9), "test": (10, 11)}
#: Samples per speaker in each split (train 1,200, val 300, test 400).
SAMPLES_PER_SPEAKER = {"train": 150, "val": 150, "test": 200}
SIZES = {s: len(SPLIT_SPEAKERS[s]) * SAMPLES_PER_SPEAKER[s] for s in SPLIT_SPEAKERS}

# ------------------------------------------------------------------ frozen knobs
#: Cue probability of each modality (``paper``: both informative, audio fast).
P_AUDIO = 0.6
P_VISUAL = 0.50
P_SENSOR = 0.35
REGIMES: dict[str, dict] = {
    "paper": {"modalities": ("audio", "visual"), "cue_prob": {"audio": P_AUDIO, "visual": P_VISUAL}},
    "weak_useless": {"modalities": ("audio", "visual"), "cue_prob": {"audio": P_AUDIO, "visual": 0.0}},
    "paper3": {
        "modalities": ("audio", "visual", "sensor"),
        "cue_prob": {"audio": P_AUDIO, "visual": P_VISUAL, "sensor": P_SENSOR},
    },
}
KINDS = {"audio": "spectrogram", "visual": "video", "sensor": "vector"}

SAMPLE_RATE = 8000
AUDIO_SAMPLES = 4000
N_FFT = 126
HOP_LENGTH = 126
AUDIO_SHAPE = (1, N_FFT // 2 + 1, 1 + AUDIO_SAMPLES // HOP_LENGTH)  # (1, 64, 32)
#: Fundamental (Hz) of each class's tone: 200 Hz times 1.25 ** class (200-610 Hz).
CLASS_F0 = tuple(200.0 * 1.25**c for c in range(NUM_CLASSES))
HARMONICS = 12
#: Tone amplitude (times a per-sample factor in [0.5, 1.5]); noise floor range over speakers.
AUDIO_AMPLITUDE = 0.3
AUDIO_NOISE = (0.06, 0.12)
#: Speaker voice pitch factor range, and the hum's frequency (Hz) and amplitude ranges.
PITCH_RANGE = (0.97, 1.03)
HUM_FREQ = (40.0, 160.0)
HUM_LEVEL = (0.0, 0.1)

IMAGE_SIZE = 32
#: Grating contrast (times a per-sample factor in [0.5, 1.5]) and per-pixel noise std.
VISUAL_CONTRAST = 0.23
VISUAL_NOISE = 0.2
DISC_RADIUS = 14.0
#: Speaker lighting: gain range and colour-tint std.
LIGHT_GAIN = (0.7, 1.3)
LIGHT_TINT = 0.08
#: Grating orientation (radians) of each class.
CLASS_ORIENTATIONS = tuple(math.pi * c / NUM_CLASSES for c in range(NUM_CLASSES))

SENSOR_DIM = 16
SENSOR_STRENGTH = 3.5
SENSOR_OFFSET = 0.5

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
#: Class definitions (sensor prototypes) are part of the version, not of the data seed.
_CLASS_SEED = 20_211_102


# ------------------------------------------------------------------ dataset type
class BuiltinDataset(ArrayDataset):
    """An :class:`ArrayDataset` with the built-in data's ``identity`` (version, regime,
    knobs) and per-sample ``cue_present`` flags, both kept by ``subset`` and
    ``select_modalities``."""

    identity: dict
    cue_present: dict[str, torch.Tensor]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> BuiltinDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._carry(super().subset(idx), {n: f[idx] for n, f in self.cue_present.items()})

    def select_modalities(self, names: Sequence[str]) -> BuiltinDataset:
        base = super().select_modalities(names)
        return self._carry(base, {n: f for n, f in self.cue_present.items() if n in names})

    def _carry(self, base: ArrayDataset, flags: dict) -> BuiltinDataset:
        out = BuiltinDataset.__new__(BuiltinDataset)
        out.__dict__.update(base.__dict__)
        out.identity = dict(self.identity)
        out.cue_present = flags
        return out

    def __repr__(self) -> str:
        return f"Builtin{super().__repr__()} (v{self.identity['version']}, regime {self.identity['regime']!r})"


# ------------------------------------------------------------------ options
def _check(name: str, value, *, minimum: float, integer: bool, maximum: float | None = None) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum or (
        maximum is not None and value > maximum
    ):
        kind = "an integer" if integer else "a finite number"
        bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{name} must be {kind} {bound}, got {value!r}")


RETIRED = (
    "'imbalance' was a knob of the built-in data version 1 and is retired; version 2 has named "
    "regimes instead: dataset_options: {regime: paper} (default) or {regime: weak_useless} "
    "(see docs/data.md)"
)


def resolve_cue_prob(regime: str, cue_prob: Mapping[str, float] | None = None) -> dict[str, float]:
    """The regime's cue probability per modality, with ``cue_prob`` overriding some of them."""
    if not isinstance(regime, str) or regime not in REGIMES:
        raise ValueError(f"regime must be one of {tuple(REGIMES)}, got {regime!r}")
    probs = dict(REGIMES[regime]["cue_prob"])
    if cue_prob is None:
        return probs
    if not isinstance(cue_prob, Mapping):
        raise ValueError(f"cue_prob must map modality -> probability, got {cue_prob!r}")
    for name, p in cue_prob.items():
        if name not in probs:
            raise ValueError(f"cue_prob: regime {regime!r} has modalities {list(probs)}, not {name!r}")
        _check(f"cue_prob[{name!r}]", p, minimum=0, maximum=1, integer=False)
        probs[name] = float(p)
    return probs


def builtin_identity(options: Mapping | None = None) -> dict:
    """What identifies the built-in data a run was trained on: ``{"version", "regime",
    "seed", "frames", "cue_prob", "num_samples", "knobs"}``, from ``dataset_options``
    (``regime``, ``seed``, ``frames``, ``cue_prob``, ``num_samples``; ``version``, when
    given, must be this installation's :data:`VERSION`). Two runs with equal
    identities were trained and evaluated on bit-identical data."""
    opts = dict(options or {})
    if "imbalance" in opts:
        raise ValueError(RETIRED)
    known = {"regime", "seed", "frames", "cue_prob", "num_samples", "version"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown built-in dataset_options {unknown}; known: {sorted(known)}")
    version = opts.get("version", VERSION)
    if version != VERSION:
        raise ValueError(
            f"this configuration asks for built-in data version {version!r}; this installation of "
            f"ogmge generates version {VERSION} (retrain on version {VERSION}, or use the ogmge "
            f"release that generated version {version!r})"
        )
    regime = opts.get("regime", DEFAULT_REGIME)
    probs = resolve_cue_prob(regime, opts.get("cue_prob"))
    seed = opts.get("seed", DEFAULT_SEED)
    frames = opts.get("frames", DEFAULT_FRAMES)
    _check("seed", seed, minimum=0, integer=True)
    _check("frames", frames, minimum=1, integer=True)
    sizes = opts.get("num_samples") or {}
    if not isinstance(sizes, Mapping) or not set(sizes) <= set(SIZES):
        raise ValueError(f"num_samples must map split ({'/'.join(SIZES)}) -> count, got {sizes!r}")
    for split, n in sizes.items():
        _check(f"num_samples[{split!r}]", n, minimum=1, integer=True)
    return {
        "dataset": "builtin",
        "version": VERSION,
        "regime": regime,
        "seed": seed,
        "frames": frames,
        "cue_prob": probs,
        "num_samples": {s: int(sizes.get(s, SIZES[s])) for s in SIZES},
        "knobs": _knobs(),
    }


def _knobs() -> dict:
    return {
        "audio_amplitude": AUDIO_AMPLITUDE,
        "audio_noise": list(AUDIO_NOISE),
        "pitch_range": list(PITCH_RANGE),
        "hum_freq": list(HUM_FREQ),
        "hum_level": list(HUM_LEVEL),
        "visual_contrast": VISUAL_CONTRAST,
        "visual_noise": VISUAL_NOISE,
        "disc_radius": DISC_RADIUS,
        "light_gain": list(LIGHT_GAIN),
        "light_tint": LIGHT_TINT,
        "sensor_strength": SENSOR_STRENGTH,
        "sensor_offset": SENSOR_OFFSET,
        "speakers": {s: list(v) for s, v in SPLIT_SPEAKERS.items()},
    }


# ------------------------------------------------------------------ generation
def make_builtin_dataset(
    split: str = "train",
    *,
    regime: str = DEFAULT_REGIME,
    seed: int = DEFAULT_SEED,
    num_samples: int | Mapping[str, int] | None = None,
    frames: int = DEFAULT_FRAMES,
    cue_prob: Mapping[str, float] | None = None,
    **retired,
) -> BuiltinDataset:
    """The built-in dataset, version 2 (see the module docstring for its content).

    split: ``"train"`` (8 speakers, 800 samples), ``"val"`` (2 speakers, 300) or
    ``"test"`` (2 speakers, 400); no speaker is in two splits.
    regime: ``"paper"`` (default), ``"weak_useless"`` or ``"paper3"`` (:data:`REGIMES`).
    seed: the data seed; with ``split`` it fixes every random draw.
    num_samples: override the split's size (spread evenly over its speakers), or a
    mapping ``{split: count}`` for the whole data set (recorded in ``identity``).
    frames: visual frames per sample.
    cue_prob: override some of the regime's cue probabilities, e.g. ``{"visual": 0.3}``.
    """
    if retired:
        if "imbalance" in retired:
            raise ValueError(RETIRED)
        raise TypeError(f"make_builtin_dataset() got unexpected options {sorted(retired)}")
    if split not in SIZES:
        raise ValueError(f"split must be one of {tuple(SIZES)}, got {split!r}")
    options = {"regime": regime, "seed": seed, "frames": frames}
    if cue_prob is not None:
        options["cue_prob"] = cue_prob
    if isinstance(num_samples, Mapping):
        options["num_samples"] = dict(num_samples)
    elif num_samples is not None:
        options["num_samples"] = {split: num_samples}
    identity = builtin_identity(options)
    probs = identity["cue_prob"]
    n = identity["num_samples"][split]

    speakers = _speakers(seed)
    ids = SPLIT_SPEAKERS[split]
    counts = [n // len(ids) + (i < n % len(ids)) for i in range(len(ids))]
    speaker = np.repeat(np.asarray(ids), counts)
    root = np.random.SeedSequence([seed, VERSION, _SPLIT_IDS[split]])
    label_ss, *streams = root.spawn(1 + 2 * len(KINDS))
    labels = _balanced_labels(counts, np.random.default_rng(label_ss))
    arrays, flags = {}, {}
    for i, name in enumerate(KINDS):  # every stream drawn from its own seed, modality by modality
        flag_rng, data_rng = np.random.default_rng(streams[2 * i]), np.random.default_rng(streams[2 * i + 1])
        if name not in probs:
            continue
        present = _cue_flags(counts, probs[name], flag_rng)
        flags[name] = torch.from_numpy(present)
        if name == "audio":
            arrays[name] = _audio(labels, present, speaker, speakers, data_rng)
        elif name == "visual":
            arrays[name] = _visual(labels, present, speaker, speakers, frames, data_rng)
        else:
            arrays[name] = _sensor(labels, present, speaker, speakers, data_rng)
    ds = ArrayDataset(
        arrays,
        labels,
        kinds={m: KINDS[m] for m in arrays},
        class_names=CLASS_NAMES,
        groups=[f"s{s:02d}" for s in speaker],
    )
    out = BuiltinDataset.__new__(BuiltinDataset)
    out.__dict__.update(ds.__dict__)
    out.identity = identity
    out.cue_present = flags
    return out


def _speakers(seed: int) -> dict[str, np.ndarray]:
    """Each speaker's nuisance, from the data seed alone (the same in every split)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, VERSION, 99]))
    k = SPEAKERS
    return {
        "pitch": rng.uniform(*PITCH_RANGE, k),
        "hum_freq": rng.uniform(*HUM_FREQ, k),
        "hum_level": rng.uniform(*HUM_LEVEL, k),
        "noise": rng.uniform(*AUDIO_NOISE, k),
        "background": rng.uniform(0.25, 0.75, (k, 3)),
        "gain": rng.uniform(*LIGHT_GAIN, k),
        "tint": rng.normal(0.0, LIGHT_TINT, (k, 3)),
        "offset": rng.normal(0.0, SENSOR_OFFSET, (k, SENSOR_DIM)),
    }


def _balanced_labels(counts: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Classes balanced within each speaker, in random order."""
    return np.concatenate([rng.permutation(np.arange(c) % NUM_CLASSES) for c in counts]).astype(np.int64)


def _cue_flags(counts: Sequence[int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(p * count)`` cue-carrying samples per speaker, chosen at random."""
    out = []
    for c in counts:
        f = np.zeros(c, dtype=bool)
        f[: int(round(p * c))] = True
        out.append(rng.permutation(f))
    return np.concatenate(out)


def make_waveforms(
    labels: np.ndarray, present: np.ndarray, speaker: np.ndarray, speakers: dict, rng: np.random.Generator
) -> np.ndarray:
    """Raw waveforms ``(N, 4000)`` in [-1, 1]: the speaker's hum and noise floor, plus (where
    the cue is present) a class harmonic tone at the speaker's pitch in a random window."""
    n = len(labels)
    t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE
    f0 = np.asarray(CLASS_F0)[labels] * speakers["pitch"][speaker] * rng.uniform(0.98, 1.02, n)
    duration = rng.uniform(0.2, 0.4, n)
    onset = rng.uniform(0, 0.5 - duration)
    amplitude = AUDIO_AMPLITUDE * rng.uniform(0.5, 1.5, n) * present
    phases = rng.uniform(0, 2 * np.pi, (HARMONICS, n))
    hum_phase = rng.uniform(0, 2 * np.pi, n)
    noise = rng.standard_normal((n, AUDIO_SAMPLES), dtype=np.float32) * speakers["noise"][speaker][:, None].astype(np.float32)
    wave = noise
    rows = np.flatnonzero(present)  # the tone is synthesised only where the cue is present
    if len(rows):
        tt = t[None, :].astype(np.float32)
        inside = (tt >= onset[rows, None]) & (tt < (onset + duration)[rows, None])
        tone = np.zeros((len(rows), AUDIO_SAMPLES), dtype=np.float32)
        for h in range(1, HARMONICS + 1):
            sub = np.flatnonzero(h * f0[rows] < 0.45 * SAMPLE_RATE)  # below 3.6 kHz
            if not len(sub):
                break
            arg = (2 * np.pi * h * f0[rows][sub, None]).astype(np.float32) * tt + phases[h - 1][rows][sub, None]
            tone[sub] += np.sin(arg.astype(np.float32))
        tone *= (amplitude[rows, None] / np.sqrt(HARMONICS / 4)).astype(np.float32) * inside
        wave[rows] += tone
    hum = speakers["hum_level"][speaker][:, None] * np.sin(
        2 * np.pi * speakers["hum_freq"][speaker][:, None] * t[None, :] + hum_phase[:, None]
    )
    return np.clip(wave + hum, -1.0, 1.0).astype(np.float32)


def _audio(labels, present, speaker, speakers, rng) -> torch.Tensor:
    wave = torch.from_numpy(make_waveforms(labels, present, speaker, speakers, rng))
    spec = log_spectrogram(wave, n_fft=N_FFT, hop_length=HOP_LENGTH)  # (N, 64, 32)
    return spec.unsqueeze(1).contiguous()


def make_frames(
    labels: np.ndarray,
    present: np.ndarray,
    speaker: np.ndarray,
    speakers: dict,
    frames: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Raw 8-bit frames ``(N, T, 32, 32, 3)``: the speaker's background and lighting, a disc
    showing a faint drifting class-oriented grating (cue present) or a flat occluder
    (cue absent), pixel noise."""
    n = len(labels)
    ys, xs = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="ij")
    theta = np.asarray(CLASS_ORIENTATIONS)[labels] + rng.normal(0, math.radians(4), n)
    cycles = rng.uniform(3.0, 5.0, n) / IMAGE_SIZE
    phase0 = rng.uniform(0, 2 * np.pi, n)
    drift = rng.uniform(-1.0, 1.0, n)
    contrast = VISUAL_CONTRAST * rng.uniform(0.5, 1.5, n) * present
    centre = IMAGE_SIZE / 2 + rng.uniform(-5, 5, (n, 2))
    occluder = rng.uniform(0.2, 0.8, (n, 3)) * ~present[:, None]
    noise = rng.standard_normal((n, frames, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32) * np.float32(VISUAL_NOISE)
    disc = ((ys[None] - centre[:, 0, None, None]) ** 2 + (xs[None] - centre[:, 1, None, None]) ** 2) <= DISC_RADIUS**2
    proj = (np.cos(theta)[:, None, None] * xs + np.sin(theta)[:, None, None] * ys) * cycles[:, None, None]
    phase = phase0[:, None] + drift[:, None] * np.arange(frames)[None, :]  # (N, T)
    grating = contrast[:, None, None, None] * np.sin(2 * np.pi * proj[:, None] + phase[:, :, None, None])
    background = speakers["background"][speaker][:, None, None, None, :]  # (N, 1, 1, 1, 3)
    inside = disc[:, None, :, :, None]
    # cue present: background + grating in the disc; absent: the occluder's flat colour there
    base = np.where(inside & ~present[:, None, None, None, None], occluder[:, None, None, None, :], background)
    img = base + (grating[..., None] * inside)
    light = speakers["gain"][speaker][:, None, None, None, None] * (1 + speakers["tint"][speaker][:, None, None, None, :])
    img = (img * light).astype(np.float32) + noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _visual(labels, present, speaker, speakers, frames, rng) -> torch.Tensor:
    """The frames through the real visual path: uint8 ``(N, T, 3, H, W)`` ->
    :func:`ogmge.data.transforms.normalize` (``x / 255``, then ImageNet mean/std)."""
    raw = torch.from_numpy(make_frames(labels, present, speaker, speakers, frames, rng))  # (N, T, H, W, 3)
    return normalize(raw.permute(0, 1, 4, 2, 3)).contiguous()


def class_prototypes() -> np.ndarray:
    """The sensor's class prototypes ``(6, 16)``, unit norm; fixed by the version, not the seed."""
    p = np.random.default_rng(_CLASS_SEED).normal(size=(NUM_CLASSES, SENSOR_DIM))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _sensor(labels, present, speaker, speakers, rng) -> torch.Tensor:
    n = len(labels)
    strength = SENSOR_STRENGTH * rng.uniform(0.5, 1.5, n) * present
    x = speakers["offset"][speaker] + rng.normal(0.0, 1.0, (n, SENSOR_DIM))
    x = x + strength[:, None] * class_prototypes()[labels]
    return torch.from_numpy(x.astype(np.float32))
