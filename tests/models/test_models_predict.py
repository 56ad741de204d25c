"""One inference path: the classifier's predict, ogmge.models.predict and ogmge.training.predict agree."""

from __future__ import annotations

import torch

from ogmge.contracts import ModalitySpec
from ogmge.models import build_model, predict
from ogmge.training import predict as training_predict


def test_one_predict_everywhere():
    torch.manual_seed(0)
    specs = {"a": ModalitySpec("a", "vector", (5,)), "b": ModalitySpec("b", "sequence", (None, 3))}
    model = build_model(specs, num_classes=4, fusion="attention", hidden=8, out_dim=8)
    x = {"a": torch.randn(6, 5), "b": torch.randn(6, 7, 3)}
    lengths = {"b": torch.tensor([7, 3, 5, 1, 7, 2])}
    model.train()
    p = predict(model, x, lengths)
    assert model.training  # mode restored
    q = model.predict(x, lengths)
    d = training_predict(model, x, lengths=lengths)
    model.eval()
    with torch.no_grad():
        out = model(x, lengths=lengths)
    expected = torch.softmax(out.logits, dim=-1)
    assert torch.allclose(p.probabilities, expected, atol=1e-6)
    assert torch.equal(p.probabilities, q.probabilities) and torch.equal(p.classes, q.classes)
    assert torch.equal(d["probs"], p.probabilities.cpu()) and torch.equal(d["pred"], p.classes.cpu())
    for name in ("a", "b"):
        assert torch.equal(d["modality_probs"][name], p.modality_probabilities[name].cpu())
        assert torch.equal(d["modality_pred"][name], p.modality_probabilities[name].argmax(-1).cpu())
    assert abs(float(p.probabilities.sum()) - 6.0) < 1e-5
