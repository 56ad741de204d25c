"""Modality dropout: keep rates, never every modality dropped, evaluation untouched."""

import copy

import pytest
import torch

from ogmge.methods import ModalityDropout
from support.method_helpers import batch, tiny_model


def test_each_modality_is_kept_with_probability_one_minus_p_n_minus_1_over_n():
    names = ["a", "b", "c"]
    md = ModalityDropout(names, p=0.5, seed=3)
    feats = {n: torch.ones(10_000, 4) for n in names}
    out = md.transform_features(feats)
    expected = 1 - 0.5 * (3 - 1) / 3
    for n in names:
        kept = (out[n] != 0).all(dim=1).float().mean().item()
        assert abs(kept - expected) <= 0.02, (n, kept)
    stacked = torch.stack([(out[n] != 0).all(dim=1) for n in names])
    assert stacked.any(dim=0).all()  # never every modality dropped
    assert (stacked.sum(0) == 3).float().mean().item() == pytest.approx(0.5, abs=0.02)  # all kept w.p. 1 - p


def test_dropped_features_become_the_baseline_and_p_zero_keeps_everything():
    md = ModalityDropout(["a", "b"], p=1.0, seed=0)
    feats = {"a": torch.randn(500, 3), "b": torch.randn(500, 3)}
    base = {"a": torch.full((3,), 7.0), "b": torch.full((3,), -7.0)}
    out = md.transform_features(feats, baseline=base)
    for n in ("a", "b"):
        kept = md.keep[n]
        assert torch.equal(out[n][kept], feats[n][kept])
        assert torch.equal(out[n][~kept], base[n].expand(int((~kept).sum()), 3))
    assert torch.equal(md.keep["a"], ~md.keep["b"])  # p = 1 with N = 2: exactly one kept
    none = ModalityDropout(["a", "b"], p=0.0).transform_features(feats)
    assert all(torch.equal(none[n], feats[n]) for n in feats)


def test_seeded_and_resumable():
    a, b = ModalityDropout(["x", "y"], seed=5), ModalityDropout(["x", "y"], seed=5)
    feats = {"x": torch.ones(64, 2), "y": torch.ones(64, 2)}
    a.transform_features(feats)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(u, v) for u, v in zip(a.transform_features(feats).values(),
                                                 b.transform_features(feats).values()))


def test_evaluation_is_bit_identical_to_the_model_without_dropout():
    names = ("audio", "visual", "text")
    with_drop = tiny_model(names, heads=False, feature_transform=ModalityDropout(list(names), p=0.9),
                           dtype=torch.float32)
    plain = tiny_model(names, heads=False, dtype=torch.float32)
    plain.load_state_dict(copy.deepcopy(with_drop.state_dict()), strict=False)
    x, y = batch(names, dtype=torch.float32)
    with_drop.eval()
    plain.eval()
    assert torch.equal(with_drop(x, labels=y).logits, plain(x, labels=y).logits)
    with_drop.train()
    plain.train()
    assert not torch.equal(with_drop(x, labels=y).logits, plain(x, labels=y).logits)  # training does drop
