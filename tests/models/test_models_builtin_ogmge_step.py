"""One forward/backward with OGM-GE on a batch of the built-in data."""

import math

import torch
from torch import nn

from ogmge import OGMGE
from ogmge.data.builtin import make_builtin_dataset
from ogmge.data.collate import collate_samples
from ogmge.models import build_model


def _model(ds):
    return build_model(ds.modalities, num_classes=ds.num_classes, fusion="concat", hidden=8, out_dim=16)


def test_ogmge_forward_backward_on_builtin_batch():
    ds = make_builtin_dataset("train", num_samples=16, seed=1)
    batch = collate_samples([ds[i] for i in range(16)])
    model = _model(ds)
    modulator = OGMGE(model.encoders, mode="OGM_GE", alpha=0.8, seed=0)
    out = model(batch["inputs"], batch["lengths"] or None, labels=batch["labels"])
    assert out.logits.shape == (16, 6)
    assert set(out.modality_logits) == {"audio", "visual"}
    nn.functional.cross_entropy(out.logits, batch["labels"]).backward()
    before = {n: [p.grad.clone() for _, p in modulator.params[n]] for n in modulator.modalities}
    stats = modulator.step(
        modality_logits={n: v.detach() for n, v in out.modality_logits.items()}, labels=batch["labels"], epoch=0
    )
    assert stats.modulated
    for n in modulator.modalities:
        after = [p.grad for _, p in modulator.params[n]]
        assert all(torch.isfinite(g).all() for g in after)
        assert any(not torch.equal(a, b) for a, b in zip(after, before[n]))  # GE noise touches every encoder
    # Eq. 9-10 by hand from the batch's scores
    sa, sv = float(stats.scores["audio"]), float(stats.scores["visual"])
    for name, rho in (("audio", sa / sv), ("visual", sv / sa)):
        expected = 1 - math.tanh(0.8 * rho) if rho > 1 else 1.0
        assert abs(float(stats.coefficients[name]) - expected) < 1e-5
