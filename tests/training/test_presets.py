"""Every shipped preset loads, validates and builds its model; the CPU-scale
variants differ from their paper presets only in scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ogmge.data.kinds import ModalitySpec
from ogmge.training import TrainConfig
from ogmge.training.config import PAPER_DATASETS, list_presets
from ogmge.training.factory import build_model_from_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"
#: Settings a CPU-scale preset may change relative to its paper preset.
SCALE_KEYS = {"width", "dataset_options", "epochs", "lr", "lr_step", "batch_size", "device", "modulation_ends"}
PAPER_FRAMES = {"cremad": 1, "kinetics_sounds": 3, "vggsound": 3, "ave": 3}
NUM_CLASSES = {"cremad": 6, "kinetics_sounds": 31, "vggsound": 309, "ave": 28, "builtin": 6}


def test_cpu_scale_variants_are_shipped():
    presets = set(list_presets())
    assert {"cremad_concat_ogmge_cpu", "cremad_sum_ogmge_cpu", "cremad_film_ogmge_cpu", "cremad_gated_ogmge_cpu",
            "vggsound_concat_ogmge_cpu"} <= presets


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads_validates_and_builds(name):
    cfg = TrainConfig.load(name)
    assert cfg.validate() is cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip through the validated constructor
    assert f"`{name}`" in DOCS.read_text(), f"docs/training.md does not list the preset {name}"
    assert cfg.eval_test_every_epoch is False  # the test split is evaluated once, at the end
    if cfg.dataset in PAPER_DATASETS:
        frames = cfg.dataset_options.get("num_frames", PAPER_FRAMES[cfg.dataset])
        size = cfg.dataset_options.get("image_size", 224)
        specs = {"audio": ModalitySpec("audio", "spectrogram", (1, 257, 188)),
                 "visual": ModalitySpec("visual", "video", (frames, 3, size, size))}
    else:  # the built-in data: the modalities of the preset's regime
        from ogmge.data.builtin import make_builtin_dataset

        opts = {k: v for k, v in cfg.dataset_options.items() if k in ("regime", "frames")}
        specs = make_builtin_dataset("val", num_samples=6, **opts).modalities
    model, builder = build_model_from_config(cfg, specs, NUM_CLASSES[cfg.dataset])
    assert builder == ("paper" if cfg.dataset in PAPER_DATASETS else "generic")
    assert set(model.encoders) == set(specs)
    if name.endswith("_cpu") or cfg.dataset == "builtin":  # small enough to run a forward pass here
        torch.manual_seed(0)
        x = {n: torch.randn(2, *s.shape) for n, s in specs.items()}
        out = model.eval()(x)
        assert out.logits.shape == (2, NUM_CLASSES[cfg.dataset])
        assert set(out.modality_logits) == set(specs)
    if cfg.dataset == "builtin":  # the estimator follows the fusion (a preset must not pin it)
        assert cfg.estimator is None


@pytest.mark.parametrize("name", [p for p in list_presets() if p.endswith("_cpu") and p != "builtin_cpu"])
def test_cpu_presets_differ_from_the_paper_preset_only_in_scale(name):
    small, full = TrainConfig.load(name), TrainConfig.load(name[: -len("_cpu")])
    changed = set(small.differences(full, ignore=()))
    assert changed <= SCALE_KEYS, f"{name} changes more than scale: {sorted(changed - SCALE_KEYS)}"
    assert (small.dataset, small.fusion, small.estimator, small.modulation, small.alpha) == (
        full.dataset, full.fusion, full.estimator, full.modulation, full.alpha)
    assert small.width < full.width
    assert small.dataset_options["image_size"] < full.dataset_options.get("image_size", 224)
    assert small.dataset_options["num_frames"] <= full.dataset_options.get("num_frames", PAPER_FRAMES[full.dataset])
    assert small.epochs < full.epochs and small.device == "cpu"
