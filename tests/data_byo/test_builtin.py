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


def test_frames_go_through_the_real_normalize_and_match_the_old_formula(monkeypatch):
    """The frames are uint8 -> ogmge.data.transforms.normalize (x/255, ImageNet mean/std);
    the values equal the formula used before (numpy frames, float x/255, (x - mean)/std)
    within 1e-6 (absolute; values lie in about [-2.2, 2.7])."""
    import numpy as np

    from ogmge.data import transforms

    calls = []

    def spy(images, *args, **kwargs):
        calls.append((images.dtype, tuple(images.shape)))
        return transforms.normalize(images, *args, **kwargs)

    monkeypatch.setattr(builtin, "normalize", spy)
    ds = make_builtin_dataset("val", num_samples=60, seed=3, frames=2)
    assert calls == [(torch.uint8, (60, 2, 3, 32, 32))]
    # the old path, written out: same seeds, same raw frames
    root = np.random.SeedSequence([3, 1])  # seed 3, split "val"
    labels_ss, _, visual_ss = root.spawn(3)
    labels = builtin._balanced_labels(60, np.random.default_rng(labels_ss))
    raw = torch.from_numpy(builtin.make_frames(labels, 2, np.random.default_rng(visual_ss)))
    x = raw.permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 1, 3, 1, 1)
    old = ((x - mean) / std).contiguous()
    got = ds.arrays["visual"]
    assert got.dtype == torch.float32 and got.shape == old.shape and got.is_contiguous()
    assert (got - old).abs().max().item() <= 1e-6
    assert ds.targets == labels.tolist()
