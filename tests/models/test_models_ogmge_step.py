"""One OGM-GE step on every fusion x applicable estimator, with a dominant modality."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ogmge import OGMGE
from support.model_helpers import dominant_batch, tiny_model

CASES = [
    (fusion, estimator)
    for fusion in ("sum", "concat", "film", "gated", "attention")
    for estimator in ("linear", "masking", "shapley", "probe")
    if estimator != "linear" or fusion in ("sum", "concat")
]


def loss_of(out, y):
    loss = F.cross_entropy(out.logits, y)
    return loss if out.probe_loss is None else loss + out.probe_loss


@pytest.mark.parametrize("fusion, estimator", CASES)
def test_one_ogmge_step_slows_only_the_dominant_modality(fusion, estimator):
    torch.manual_seed(0)
    model = tiny_model(fusion, estimator)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(25):  # learn a little: audio carries the label, visual is noise
        x, y = dominant_batch(32, g)
        opt.zero_grad()
        loss_of(model(x, labels=y), y).backward()
        opt.step()

    x, y = dominant_batch(64, g)
    modulated, plain = model, copy.deepcopy(model)
    outs = {}
    for name, m in (("modulated", modulated), ("plain", plain)):
        m.zero_grad()
        out = m(x, labels=y)
        loss_of(out, y).backward()
        outs[name] = out
    ogm = OGMGE(modulated.encoders, mode="OGM_GE", alpha=0.8, select="weights", seed=0)
    normal = OGMGE(plain.encoders, mode="Normal", alpha=0.8, select="weights", seed=0)
    stats = ogm.step(modality_logits=outs["modulated"].modality_logits, labels=y, epoch=0)
    normal.step(modality_logits=outs["plain"].modality_logits, labels=y, epoch=0)

    assert stats.modulated
    assert stats.ratios["audio"].item() > 1 > stats.ratios["visual"].item()
    assert stats.coefficients["audio"].item() < 1
    assert stats.coefficients["visual"].item() == 1.0
    ref = dict(plain.named_parameters())
    for name, p in modulated.fusion.named_parameters():
        assert torch.equal(p.grad, ref[f"fusion.{name}"].grad), name
    for name, p in modulated.estimator.named_parameters():
        assert torch.equal(p.grad, ref[f"estimator.{name}"].grad), name
    # the dominant encoder's selected gradients were changed
    w = modulated.encoders["audio"].net[0].weight
    assert not torch.equal(w.grad, ref["encoders.audio.net.0.weight"].grad)
