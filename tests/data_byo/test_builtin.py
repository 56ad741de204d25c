"""The built-in dataset: documented sizes and shapes, deterministic per seed."""

import pytest
import torch

from ogmge.data import builtin
from ogmge.data.builtin import make_builtin_dataset
from ogmge.data.collate import collate_samples


def test_documented_sizes_and_shapes():
    assert builtin.SIZES == {"train": 1500, "val": 300, "test": 600}
    assert builtin.DEFAULT_IMBALANCE == 3.0 and builtin.DEFAULT_SEED == 0 and builtin.DEFAULT_FRAMES == 2
    ds = make_builtin_dataset("val")
    assert len(ds) == 300 and ds.num_classes == 6 and len(ds.class_names) == 6
    assert ds.modalities["audio"].kind == "spectrogram" and ds.modalities["audio"].shape == (1, 64, 64)
    assert ds.modalities["visual"].kind == "video" and ds.modalities["visual"].shape == (2, 3, 32, 32)
    assert torch.bincount(torch.tensor(ds.targets)).tolist() == [50] * 6
    s = ds[0]
    assert set(s) == {"inputs", "label"}
    assert s["inputs"]["audio"].dtype == torch.float32 and s["inputs"]["audio"].shape == (1, 64, 64)
    batch = collate_samples([ds[i] for i in range(8)])
    assert batch["inputs"]["visual"].shape == (8, 2, 3, 32, 32)
    assert len(make_builtin_dataset("test", num_samples=12, frames=3)[0]["inputs"]["visual"]) == 3


def test_deterministic_for_a_seed_and_different_across_seeds_and_splits():
    a = make_builtin_dataset("train", num_samples=48, seed=5)
    b = make_builtin_dataset("train", num_samples=48, seed=5)
    for name in ("audio", "visual"):
        assert torch.equal(a.arrays[name], b.arrays[name])
    assert a.targets == b.targets
    c = make_builtin_dataset("train", num_samples=48, seed=6)
    assert not torch.equal(a.arrays["audio"], c.arrays["audio"])
    assert not torch.equal(a.arrays["visual"], c.arrays["visual"])
    t = make_builtin_dataset("test", num_samples=48, seed=5)
    assert not torch.equal(a.arrays["audio"], t.arrays["audio"])


def test_audio_goes_through_log_spectrogram():
    import numpy as np

    from ogmge.data.audio import log_spectrogram

    ds = make_builtin_dataset("val", num_samples=6, seed=2)
    root = np.random.SeedSequence([2, 1])
    label_ss, audio_ss, _ = root.spawn(3)
    labels = np.asarray(ds.targets)
    wave = builtin.make_waveforms(labels, builtin.DEFAULT_IMBALANCE, np.random.default_rng(audio_ss))
    assert wave.shape == (6, 4000) and np.abs(wave).max() <= 1
    spec = log_spectrogram(torch.from_numpy(wave), n_fft=builtin.N_FFT, hop_length=builtin.HOP_LENGTH)
    assert torch.equal(spec.unsqueeze(1), ds.arrays["audio"])


def test_imbalance_zero_removes_the_audio_cue_only():
    quiet = make_builtin_dataset("val", num_samples=12, imbalance=0.0)
    loud = make_builtin_dataset("val", num_samples=12, imbalance=3.0)
    assert torch.equal(quiet.arrays["visual"], loud.arrays["visual"])
    assert quiet.arrays["audio"].std() < loud.arrays["audio"].std()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"imbalance": -1.0}, "imbalance must be a finite number >= 0, got -1.0"),
     ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
     ({"frames": 0}, "frames must be an integer >= 1, got 0"),
     ({"num_samples": 0}, "num_samples must be an integer >= 1, got 0")],
)
def test_arguments_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_builtin_dataset("train", **kwargs)
    with pytest.raises(ValueError, match="split must be one of"):
        make_builtin_dataset("dev")
