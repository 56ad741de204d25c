"""Every shipped preset loads, validates, builds its model and trains one step; the
CPU-scale variants differ from their paper presets only in scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ogmge.contracts import ModalitySpec
from ogmge.training import TrainConfig
from ogmge.training.config import PAPER_DATASETS, list_presets
from ogmge.training.factory import build_model_from_config, build_modulator, build_optimizer

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
def test_every_preset_loads_validates_and_trains_one_step(name):
    """Every preset builds its model, optimizer and modulator, and one training step on two
    synthetic samples of the right shapes changes the weights. Paper presets run at width 4
    on 32 x 32 frames (the ResNet-18s pool globally, so only the cost changes with size)."""
    cfg = TrainConfig.load(name)
    assert cfg.validate() is cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip through the validated constructor
    assert f"`{name}`" in DOCS.read_text(), f"docs/training.md does not list the preset {name}"
    assert cfg.eval_test_every_epoch is False  # the test split is evaluated once, at the end
    paper = cfg.dataset in PAPER_DATASETS
    if paper:  # the paper model at reduced input sizes (ResNets take any size)
        frames = cfg.dataset_options.get("num_frames", PAPER_FRAMES[cfg.dataset])
        specs = {"audio": ModalitySpec("audio", "spectrogram", (1, 32, 48)),
                 "visual": ModalitySpec("visual", "video", (frames, 3, 32, 32))}
    else:  # the built-in data: the modalities of the preset's regime
        from ogmge.data.builtin import make_builtin_dataset

        opts = {k: v for k, v in cfg.dataset_options.items() if k in ("regime", "frames")}
        specs = make_builtin_dataset("val", num_samples=6, **opts).modalities
    if cfg.dataset == "builtin":  # the estimator follows the fusion (a preset must not pin it)
        assert cfg.estimator is None
    classes = NUM_CLASSES[cfg.dataset]
    small = cfg.replace(width=min(cfg.width, 4))
    model, builder = build_model_from_config(small, specs, classes)
    assert builder == ("paper" if paper else "generic")
    assert set(model.encoders) == set(specs)

    optimizer = build_optimizer(small, model.parameters())
    modulator = build_modulator(small, model)
    assert modulator is not None and modulator.mode == cfg.modulation and modulator.alpha == cfg.alpha
    g = torch.Generator().manual_seed(0)
    x = {n: torch.randn(2, *s.shape, generator=g) for n, s in specs.items()}
    y = torch.tensor([0, classes - 1])
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    out = model(x, labels=y)
    assert out.logits.shape == (2, classes)
    assert set(out.modality_logits) == set(specs)
    keep = out.sample_keep if out.sample_keep is not None else torch.ones(2, dtype=torch.bool)
    loss = F.cross_entropy(out.logits[keep], y[keep]) if keep.any() else out.logits.sum() * 0
    if getattr(out, "probe_loss", None) is not None:
        loss = loss + out.probe_loss
    optimizer.zero_grad()
    loss.backward()
    stats = modulator.step(modality_logits=out.modality_logits, labels=y, epoch=cfg.modulation_starts,
                           sample_weight=keep.float())
    assert stats.ran is (cfg.modulation != "Normal")
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed > len(before) // 2, f"{name}: one step changed only {changed} of {len(before)} tensors"


@pytest.mark.parametrize("name", [p for p in list_presets() if p.endswith("_cpu") and p != "builtin_cpu"])
def test_cpu_presets_differ_from_the_paper_preset_only_in_scale(name):
    small, full = TrainConfig.load(name), TrainConfig.load(name[: -len("_cpu")])
    changed = set(small.differences(full, ignore=(), unused=True))  # as written
    assert changed <= SCALE_KEYS, f"{name} changes more than scale: {sorted(changed - SCALE_KEYS)}"
    assert (small.dataset, small.fusion, small.estimator, small.modulation, small.alpha) == (
        full.dataset, full.fusion, full.estimator, full.modulation, full.alpha)
    assert small.width < full.width
    assert small.dataset_options["image_size"] < full.dataset_options.get("image_size", 224)
    assert small.dataset_options["num_frames"] <= full.dataset_options.get("num_frames", PAPER_FRAMES[full.dataset])
    assert small.epochs < full.epochs and small.device == "cpu"
