"""The built-in dataset v2: documented sizes, shapes and kinds, deterministic per seed,
speaker-independent splits, cue-presence rates, regimes, identity, the retired v1 knob."""

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from ogmge.data import builtin
from ogmge.data.builtin import REGIMES, builtin_identity, make_builtin_dataset
from ogmge.data.collate import collate_samples

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def paper():
    """The default data (regime paper, seed 0, documented sizes), all three splits."""
    return {s: make_builtin_dataset(s) for s in SPLITS}


@pytest.fixture(scope="module")
def useless_train():
    return make_builtin_dataset("train", regime="weak_useless")


def test_documented_sizes_shapes_and_kinds(paper):
    assert builtin.VERSION == 2 and builtin.DEFAULT_REGIME == "paper" and builtin.DEFAULT_SEED == 0
    assert builtin.SIZES == {"train": 1200, "val": 300, "test": 400}
    assert {s: len(d) for s, d in paper.items()} == builtin.SIZES
    ds = paper["val"]
    assert ds.num_classes == 6 and ds.class_names == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert {n: (s.kind, s.shape) for n, s in ds.modalities.items()} == {
        "audio": ("spectrogram", (1, 64, 32)),
        "visual": ("video", (2, 3, 32, 32)),
    }
    assert builtin.AUDIO_SHAPE == (1, 64, 32)
    for d in paper.values():  # classes balanced within every speaker
        for s in set(d.groups):
            y = torch.tensor([t for t, g in zip(d.targets, d.groups) if g == s])
            counts = torch.bincount(y, minlength=6)
            assert counts.max() - counts.min() <= 1
    sample = ds[0]
    assert set(sample) == {"inputs", "label"} and sample["inputs"]["audio"].dtype == torch.float32
    batch = collate_samples([ds[i] for i in range(8)])
    assert batch["inputs"]["visual"].shape == (8, 2, 3, 32, 32)
    three = make_builtin_dataset("test", regime="paper3", num_samples=12, frames=3)
    assert {n: (s.kind, s.shape) for n, s in three.modalities.items()} == {
        "audio": ("spectrogram", (1, 64, 32)),
        "visual": ("video", (3, 3, 32, 32)),
        "sensor": ("vector", (16,)),
    }
    assert len(three) == 12 and set(three.cue_present) == {"audio", "visual", "sensor"}


def test_speakers_never_shared_between_splits(paper):
    seen = {s: set(d.groups) for s, d in paper.items()}
    assert seen == {s: {f"s{k:02d}" for k in builtin.SPLIT_SPEAKERS[s]} for s in SPLITS}
    assert len(seen["train"]) == 8 and len(seen["val"]) == 2 and len(seen["test"]) == 2
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


def test_cue_presence_rates_match_the_regime(paper, useless_train):
    for regime, sets in (("paper", paper), ("weak_useless", {"train": useless_train})):
        for split, d in sets.items():
            assert set(d.cue_present) == set(REGIMES[regime]["cue_prob"])
            for name, p in REGIMES[regime]["cue_prob"].items():
                rate = d.cue_present[name].float().mean().item()
                assert abs(rate - p) <= 0.02, (regime, split, name, rate, p)
    flags = paper["train"].cue_present  # independent across modalities: P(a and v) ~ p_a * p_v
    both = (flags["audio"] & flags["visual"]).float().mean().item()
    assert abs(both - builtin.P_AUDIO * builtin.P_VISUAL) <= 0.04
    three = make_builtin_dataset("train", regime="paper3", num_samples=600)
    for name, p in REGIMES["paper3"]["cue_prob"].items():
        assert abs(three.cue_present[name].float().mean().item() - p) <= 0.02


def test_deterministic_per_seed_and_different_across_seeds_and_splits():
    a = make_builtin_dataset("train", num_samples=48, seed=5, regime="paper3")
    b = make_builtin_dataset("train", num_samples=48, seed=5, regime="paper3")
    c = make_builtin_dataset("train", num_samples=48, seed=6, regime="paper3")
    for name in ("audio", "visual", "sensor"):
        assert torch.equal(a.arrays[name], b.arrays[name])
        assert torch.equal(a.cue_present[name], b.cue_present[name])
        assert not torch.equal(a.arrays[name], c.arrays[name])
    assert a.targets == b.targets and a.groups == b.groups
    t = make_builtin_dataset("test", num_samples=48, seed=5)
    assert not torch.equal(a.arrays["audio"], t.arrays["audio"])
    # the two-modality regimes draw the same audio and visual streams as paper3
    two = make_builtin_dataset("train", num_samples=48, seed=5)
    assert torch.equal(two.arrays["audio"], a.arrays["audio"]) and torch.equal(two.arrays["visual"], a.arrays["visual"])


def test_absent_cue_is_nuisance_only():
    """Where a cue is absent the modality is what it would be with no cue at all: the same
    samples with ``cue_prob`` 0 for that modality, bit for bit; where present it differs."""
    paper = make_builtin_dataset("val", num_samples=120)
    no_audio = make_builtin_dataset("val", num_samples=120, cue_prob={"audio": 0.0})
    useless = make_builtin_dataset("val", num_samples=120, regime="weak_useless")
    for name, other in (("audio", no_audio), ("visual", useless)):
        present = paper.cue_present[name]
        assert not other.cue_present[name].any()
        assert torch.equal(paper.arrays[name][~present], other.arrays[name][~present])
        diff = (paper.arrays[name][present] - other.arrays[name][present]).flatten(1).abs().amax(1)
        assert (diff > 0).all()
    # the modality whose cue probability did not change is identical
    assert torch.equal(paper.arrays["visual"], no_audio.arrays["visual"])
    assert torch.equal(paper.arrays["audio"], useless.arrays["audio"])


def _orientation_bin(visual: torch.Tensor) -> np.ndarray:
    """Per sample, which class orientation holds most spectral power in the frames
    (grey, per-frame mean removed; 2-D FFT power summed over frames; power in a ±15°
    sector around each class's wave-vector angle, 2-7 cycles per frame)."""
    grey = visual.mean(2).numpy()  # (N, T, H, W)
    grey = grey - grey.mean(axis=(2, 3), keepdims=True)
    power = (np.abs(np.fft.fft2(grey)) ** 2).sum(1)  # (N, H, W)
    f = np.fft.fftfreq(builtin.IMAGE_SIZE) * builtin.IMAGE_SIZE
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius, angle = np.hypot(fx, fy), np.mod(np.arctan2(fy, fx), np.pi)
    band = (radius >= 2) & (radius <= 7)
    energy = []
    for theta in builtin.CLASS_ORIENTATIONS:
        d = np.abs(np.angle(np.exp(2j * (angle - theta)))) / 2  # angular distance modulo pi
        energy.append((power * (band & (d <= np.radians(15)))).sum(axis=(1, 2)))
    return np.argmax(np.stack(energy, 1), 1)


def _independence_p(labels, feature) -> float:
    table = np.zeros((6, 6))
    np.add.at(table, (np.asarray(labels), feature), 1)
    return chi2_contingency(table)[1]


def test_weak_useless_vision_is_independent_of_the_label(paper, useless_train):
    """A chi-square test of independence between the label and the frames' dominant
    orientation. It rejects on the paper regime's frames (which carry the cue), so it can
    fail; on weak_useless it must not."""
    p_paper = _independence_p(paper["train"].targets, _orientation_bin(paper["train"].arrays["visual"]))
    assert p_paper < 1e-6
    p_useless = _independence_p(useless_train.targets, _orientation_bin(useless_train.arrays["visual"]))
    assert p_useless > 1e-3


def test_identity_recorded_and_kept_by_views(paper):
    ident = paper["train"].identity
    assert ident == builtin_identity() == builtin_identity({"regime": "paper", "version": 2})
    assert ident["version"] == 2 and ident["regime"] == "paper" and ident["seed"] == 0
    assert ident["cue_prob"] == {"audio": builtin.P_AUDIO, "visual": builtin.P_VISUAL}
    assert builtin_identity({"regime": "weak_useless"})["cue_prob"]["visual"] == 0.0
    sub = paper["train"].subset([0, 5, 7]).select_modalities(["visual"])
    assert sub.identity == ident and set(sub.cue_present) == {"visual"}
    assert torch.equal(sub.cue_present["visual"], paper["train"].cue_present["visual"][[0, 5, 7]])
    assert builtin_identity({"cue_prob": {"visual": 0.25}})["cue_prob"]["visual"] == 0.25


@pytest.mark.parametrize(
    ("options", "message"),
    [({"version": 1}, "asks for built-in data version 1; this installation of ogmge generates version 2"),
     ({"imbalance": 3.0}, "'imbalance' was a knob of the built-in data version 1"),
     ({"regime": "strong"}, "regime must be one of"),
     ({"cue_prob": {"sensor": 0.5}}, "regime 'paper' has modalities"),
     ({"cue_prob": {"visual": 1.5}}, r"cue_prob\['visual'\] must be a finite number >= 0 and <= 1"),
     ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
     ({"frames": 0}, "frames must be an integer >= 1, got 0"),
     ({"num_samples": {"dev": 3}}, "num_samples must map split"),
     ({"speakers": 3}, "unknown built-in dataset_options")],
)
def test_options_validated(options, message):
    with pytest.raises(ValueError, match=message):
        builtin_identity(options)


def test_arguments_validated():
    with pytest.raises(ValueError, match="'imbalance' was a knob of the built-in data version 1"):
        make_builtin_dataset("train", imbalance=3.0)
    with pytest.raises(ValueError, match="split must be one of"):
        make_builtin_dataset("dev")
    with pytest.raises(ValueError, match=r"num_samples\['train'\] must be an integer >= 1, got 0"):
        make_builtin_dataset("train", num_samples=0)


def test_audio_goes_through_log_spectrogram_and_frames_through_normalize(monkeypatch):
    from ogmge.data import transforms
    from ogmge.data.audio import log_spectrogram

    calls = []

    def spy(images, *args, **kwargs):
        calls.append((images.dtype, tuple(images.shape)))
        return transforms.normalize(images, *args, **kwargs)

    monkeypatch.setattr(builtin, "normalize", spy)
    ds = make_builtin_dataset("val", num_samples=6, seed=2)
    assert calls == [(torch.uint8, (6, 2, 3, 32, 32))]
    # the raw waveforms, redrawn from the documented streams, give the stored spectrograms
    root = np.random.SeedSequence([2, builtin.VERSION, 1])  # seed 2, version, split "val"
    _, _, audio_ss, *_ = root.spawn(1 + 2 * len(builtin.KINDS))
    speaker = np.array([8, 8, 8, 9, 9, 9])
    wave = builtin.make_waveforms(
        np.asarray(ds.targets), ds.cue_present["audio"].numpy(), speaker, builtin._speakers(2),
        np.random.default_rng(audio_ss),
    )
    assert wave.shape == (6, 4000) and np.abs(wave).max() <= 1
    spec = log_spectrogram(torch.from_numpy(wave), n_fft=builtin.N_FFT, hop_length=builtin.HOP_LENGTH)
    assert torch.equal(spec.unsqueeze(1), ds.arrays["audio"])
