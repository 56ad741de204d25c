"""OGM-GE and OPM through the protocol: the adapters do exactly what the objects do."""

import copy

import torch
import torch.nn.functional as F

from ogmge import OGMGE, OPM
from ogmge.methods import BalancingMethod, OGMGEMethod, OPMMethod
from support.method_helpers import batch, tiny_model

NAMES = ("audio", "visual")


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_ogmge_adapter_equals_the_modulator():
    model = tiny_model(NAMES, heads=False, dtype=torch.float32)
    twin = copy.deepcopy(model)
    x, y = batch(NAMES, dtype=torch.float32)
    results = []
    for m, use_adapter in ((model, True), (twin, False)):
        modulator = OGMGE(m.encoders, mode="OGM_GE", alpha=0.8, select="all", seed=1)
        out = m(x, labels=y)
        method = OGMGEMethod(modulator) if use_adapter else None
        base = method or BalancingMethod()
        total, terms = base.loss(out.logits, y)
        base.backward(total, terms)
        if use_adapter:
            stats = method.after_backward(modality_logits=out.modality_logits, labels=y, epoch=0)
            assert set(method.trace_row()) >= {"coeff/audio", "ratio/visual"}
        else:
            stats = modulator.step(modality_logits=out.modality_logits, labels=y, epoch=0)
        results.append((_grads(m), stats))
    (g1, s1), (g2, s2) = results
    assert all(torch.equal(g1[k], g2[k]) for k in g1)
    assert all(torch.equal(s1.coefficients[n], s2.coefficients[n]) for n in NAMES)


def test_opm_adapter_draws_the_same_masks_and_keeps_only_surviving_samples():
    feats = {n: torch.randn(64, 5) for n in NAMES}
    logits = {"audio": torch.randn(64, 3) * 3, "visual": torch.randn(64, 3)}
    y = torch.randint(0, 3, (64,))
    adapter = OPMMethod(OPM(p_exe=1.0, seed=2))
    out = adapter.transform_features(feats, labels=y, modality_logits=logits)
    from ogmge.modulation import batch_scores, discrepancy_ratios

    masks = OPM(p_exe=1.0, seed=2).sample(discrepancy_ratios(batch_scores(logits, y)), 64)
    ref = masks.apply(feats)
    assert all(torch.equal(out[n], ref[n]) for n in NAMES)
    fused = torch.randn(64, 3)
    total, _ = adapter.loss(fused, y)
    per = F.cross_entropy(fused, y, reduction="none")
    keep = masks.sample_keep.float()
    assert torch.allclose(total, (per * keep).sum() / keep.sum())
