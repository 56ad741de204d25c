"""Models for methods: heads, ensemble buffer, feature transform; rebuilt from the config;
checkpoints of version 1 still load."""

import pytest
import torch

from ogmge.contracts import ModalitySpec
from ogmge.methods import GBlending, MMPareto, ModalityDropout, UnimodalEnsemble
from ogmge.training import checkpoint as ckpt_mod
from ogmge.training.config import TrainConfig
from ogmge.training.factory import build_method, build_model_from_config, model_spec

SPECS = {n: ModalitySpec(n, "vector", (4,)) for n in ("a", "b", "c")}


@pytest.mark.parametrize(
    ("method", "heads", "prediction", "kind"),
    [("gblend", True, "fused", GBlending), ("mmpareto", True, "fused", MMPareto),
     ("uni_ensemble", True, "ensemble", UnimodalEnsemble), ("mdrop", False, "fused", ModalityDropout)],
)
def test_config_method_builds_the_model_and_the_method(method, heads, prediction, kind):
    cfg = TrainConfig(method=method, fusion="attention", model_options={"hidden": 8, "out_dim": 8,
                                                                       "fusion_options": {"d_model": 8, "heads": 2}})
    model, builder = build_model_from_config(cfg, SPECS, 3)
    assert (model.heads is not None, model.prediction) == (heads, prediction)
    spec = model_spec(SPECS, 3, ["x", "y", "z"], builder, model)
    assert (spec["heads"], spec["prediction"]) == (heads, prediction)
    method_obj = build_method(cfg, model)
    assert isinstance(method_obj, kind)
    x = {n: torch.randn(5, 4) for n in SPECS}
    out = model(x, labels=torch.zeros(5, dtype=torch.long))
    if heads:
        assert set(out.head_logits) == set(SPECS) and out.head_logits["a"].shape == (5, 3)
        assert out.head_logits["a"].requires_grad
    else:
        assert out.head_logits is None
    rebuilt, _ = build_model_from_config(cfg, SPECS, 3, builder=builder)
    rebuilt.load_state_dict(model.state_dict())  # the same structure from the config alone


def test_methods_need_two_modalities():
    cfg = TrainConfig(method="mmpareto")
    with pytest.raises(ValueError, match="2 or more modalities"):
        build_model_from_config(cfg, {"a": SPECS["a"]}, 3)


def test_version_1_checkpoints_still_load(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": ckpt_mod.FORMAT, "version": 1, "epoch": 0}, path)
    assert ckpt_mod.load_checkpoint_file(path)["version"] == ckpt_mod.VERSION  # migrated on load
    torch.save({"format": ckpt_mod.FORMAT, "version": 99}, path)
    with pytest.raises(ValueError, match="version 99"):
        ckpt_mod.load_checkpoint_file(path)
    assert ckpt_mod.VERSION == 3
