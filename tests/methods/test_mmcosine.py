"""MMCosine's cosine classifier against a float64 re-derivation: per-modality
``s * cos(f_u, W_{u,c})`` summed, no bias, the same in training and evaluation."""

import pytest
import torch

from ogmge.methods import CosineHead
from ogmge.models import ConcatFusion, GatedFusion, MultimodalClassifier, SumFusion
from support.method_helpers import CLASSES, FEAT, TinyEncoder, batch

NAMES = ("audio", "visual", "text")


def _model(fusion_cls=ConcatFusion, scale=10.0):
    torch.manual_seed(0)
    enc = {n: TinyEncoder() for n in NAMES}
    head = CosineHead(fusion_cls({n: FEAT for n in NAMES}, CLASSES), scale)
    return MultimodalClassifier(enc, head).double()


def oracle_logits(features, weights, scale):
    total = 0
    for u in NAMES:
        f, w = features[u], weights[u]
        fn = f / torch.sqrt((f * f).sum(1, keepdim=True))
        wn = w / torch.sqrt((w * w).sum(1, keepdim=True))
        total = total + scale * torch.einsum("bd,cd->bc", fn, wn)
    return total


def _blocks(model):
    fc = model.fusion.base.fc
    if isinstance(fc, torch.nn.ModuleDict):
        return {u: fc[u].weight for u in NAMES}
    return {u: fc.weight[:, i * FEAT:(i + 1) * FEAT] for i, u in enumerate(NAMES)}


@pytest.mark.parametrize("fusion_cls", [ConcatFusion, SumFusion])
def test_logits_and_one_sgd_step_match_the_cosine_equation(fusion_cls):
    model = _model(fusion_cls, scale=7.0)
    x, y = batch(NAMES, n=12, seed=4)
    out = model(x, labels=y)
    want = oracle_logits(out.features, _blocks(model), 7.0)
    torch.testing.assert_close(out.logits, want, rtol=1e-6, atol=1e-12)
    loss = torch.nn.functional.cross_entropy(out.logits, y)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    ref = torch.nn.functional.cross_entropy(want, y)
    grads_ref = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(grads, grads_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)
    biases = [p for n, p in model.named_parameters() if n.startswith("fusion.") and n.endswith("bias")]
    assert biases and not any(p.requires_grad for p in biases)  # no bias in a cosine classifier


def test_evaluation_uses_the_cosine_classifier_it_trained():
    model = _model()
    x, y = batch(NAMES, n=9, seed=8)
    model.eval()
    with torch.no_grad():
        out = model(x)
        want = oracle_logits(model.encode(x), _blocks(model), 10.0)
    torch.testing.assert_close(out.logits, want, rtol=1e-6, atol=1e-12)
    for u in NAMES:
        f = model.encode(x)[u]
        fn = f / f.norm(dim=1, keepdim=True)
        wn = _blocks(model)[u] / _blocks(model)[u].norm(dim=1, keepdim=True)
        torch.testing.assert_close(out.modality_logits[u], 10.0 * fn @ wn.t(), rtol=1e-6, atol=1e-12)


def test_a_head_whose_last_layer_is_not_per_modality_is_refused_by_name():
    with pytest.raises(ValueError, match="GatedFusion"):
        CosineHead(GatedFusion({"audio": FEAT, "visual": FEAT}, CLASSES))
    with pytest.raises(ValueError, match="scale"):
        CosineHead(ConcatFusion({"audio": FEAT, "visual": FEAT}, CLASSES), scale=0)


def test_registered_with_the_authors_scale_and_wraps_a_head():
    from ogmge import methods
    from ogmge.methods import BuildContext

    cls = methods.get("mmcosine")
    assert [(o.name, o.default) for o in cls.options] == [("scale", 10.0)]
    assert "main_CD.py:59" in cls.options[0].source
    assert cls.build(BuildContext(modalities=NAMES)).scale == 10.0
    head = cls.wrap_fusion(ConcatFusion({n: FEAT for n in NAMES}, CLASSES), scale=15.0)
    assert isinstance(head, CosineHead) and head.scale == 15.0
    with pytest.raises(ValueError, match="mmcosine option scale.*-1"):
        cls.build(BuildContext(modalities=NAMES), scale=-1)
