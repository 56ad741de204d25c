"""Every bad hyper-parameter gives an error naming it (methods, model, config, CLI)."""

import argparse

import pytest
import torch

from ogmge.interfaces.config_cli import add_config_flags, config_from_args
from ogmge.methods import GBlending, MMPareto, ModalityDropout, UnimodalEnsemble
from ogmge.training.config import TrainConfig

ENC = {"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2)}


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: GBlending(["a", "b"], super_epoch=0), "super_epoch"),
        (lambda: GBlending(["a", "b"], super_epoch=1.5), "super_epoch"),
        (lambda: GBlending(["a", "b"], w_min=-0.1), "w_min"),
        (lambda: GBlending(["a", "b"], w_min=0.4), "w_min"),  # 3 heads: at most 1/3
        (lambda: GBlending(["a", "b"], delta_o_min=0.0), "delta_o_min"),
        (lambda: GBlending(["a", "b"], weights={"a": 1.0}), "weights"),
        (lambda: GBlending(["a"]), "modalities"),
        (lambda: GBlending(["fused", "b"]), "modalities"),
        (lambda: ModalityDropout(["a", "b"], p=1.5), "p"),
        (lambda: ModalityDropout(["a", "b"], p="half"), "p"),
        (lambda: ModalityDropout(["a", "b"], p=float("nan")), "p"),
        (lambda: ModalityDropout("ab"), "modalities"),
        (lambda: MMPareto(ENC, scale=0.0), "scale"),
        (lambda: MMPareto(ENC, scale=True), "scale"),
        (lambda: MMPareto({"a": ENC["a"]}), "encoders"),
        (lambda: UnimodalEnsemble(["a", "b"], max_steps=0), "max_steps"),
        (lambda: UnimodalEnsemble(["a", "b"], tol=-1.0), "tol"),
    ],
)
def test_method_errors_name_the_hyper_parameter(make, name):
    with pytest.raises((ValueError, TypeError)) as err:
        make()
    assert name in str(err.value)


def test_hyper_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        GBlending(["a", "b"], 3)
    with pytest.raises(TypeError):
        ModalityDropout(["a", "b"], 0.5)
    with pytest.raises(TypeError):
        MMPareto(ENC, 1.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("gblend_super_epoch", 0), ("gblend_w_min", 1.5), ("gblend_w_min", -1), ("gblend_delta_o_min", 0),
     ("mdrop_p", 1.1), ("mdrop_p", None), ("mmpareto_scale", -1.0)],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_deprecated_cli_flags_reach_the_method_and_other_methods_options_are_not_carried():
    p = argparse.ArgumentParser()
    add_config_flags(p)
    cfg = config_from_args(p.parse_args(["--method", "gblend", "--gblend-super-epoch", "3", "--gblend-w-min",
                                         "0.1", "--gblend-delta-o-min", "0.05", "--mdrop-p", "0.25",
                                         "--mmpareto-scale", "2"]))
    assert cfg.method == {"name": "gblend", "estimate": "paper", "super_epoch": 3, "w_min": 0.1,
                          "delta_o_min": 0.05}
    assert (cfg.gblend_super_epoch, cfg.gblend_w_min, cfg.gblend_delta_o_min) == (3, 0.1, 0.05)
    assert (cfg.mdrop_p, cfg.mmpareto_scale) == (0.5, 1.5)  # not this run's method: the defaults
    with pytest.raises(ValueError, match="mdrop_p"):
        config_from_args(p.parse_args(["--mdrop-p", "2"]))


def test_method_opt_sets_the_options_and_names_a_bad_one():
    p = argparse.ArgumentParser()
    add_config_flags(p)
    cfg = config_from_args(p.parse_args(["--method", "gblend", "--method-opt", "w_min=0.2",
                                         "--method-opt", "super_epoch=4"]))
    assert cfg.method == {"name": "gblend", "estimate": "paper", "super_epoch": 4, "w_min": 0.2,
                          "delta_o_min": 1e-6}
    with pytest.raises(ValueError, match="method gblend option w_min must be in .*got 2.0"):
        config_from_args(p.parse_args(["--method", "gblend", "--method-opt", "w_min=2"]))
    with pytest.raises(ValueError, match="method gblend has no option 'p'"):
        config_from_args(p.parse_args(["--method", "gblend", "--method-opt", "p=0.2"]))
    # a paper flag's option goes to its flag
    assert config_from_args(p.parse_args(["--method", "ogm", "--method-opt", "alpha=0.3"])).alpha == 0.3


def test_a_config_saved_before_the_registry_resumes_without_differences():
    # a gblend run saved then ran the online estimate with the defaults of the time
    new = TrainConfig(method={"name": "gblend", "estimate": "online", "super_epoch": 2, "w_min": 0.05,
                              "delta_o_min": 0.01})
    old_values = {**{k: v for k, v in new.to_dict().items() if k not in ("method", "method_class", "prediction")},
                  "method": "gblend", "gblend_super_epoch": 2, "gblend_w_min": 0.05, "gblend_delta_o_min": 0.01,
                  "mdrop_p": 0.5, "mmpareto_scale": 1.5, "anchored_weight": 1.0}
    old = TrainConfig.from_dict(old_values)
    assert old.differences(new) == {}
    assert new.replace(mdrop_p=0.3).differences(new) == {}  # another method's setting: not this run's
    changed = new.replace(gblend_w_min=0.1).differences(new)
    assert list(changed) == ["method"] and changed["method"][0]["w_min"] == 0.1
