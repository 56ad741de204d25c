"""Unimodal ensemble: each encoder trains as if alone; the weights' fit on validation outputs."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import UnimodalEnsemble, ensemble_logits, fit_simplex_weights, project_simplex
from ogmge.methods.uni_ensemble import ensemble_nll
from support.method_helpers import batch, tiny_model

NAMES = ("audio", "visual", "text")


def test_each_encoder_equals_the_same_encoder_trained_alone():
    model = tiny_model(NAMES, prediction="ensemble", dtype=torch.float32)
    alone = {n: copy.deepcopy(torch.nn.ModuleDict({"enc": model.encoders[n], "head": model.heads[n]}))
             for n in NAMES}
    ue = UnimodalEnsemble(list(NAMES))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opts = {n: torch.optim.SGD(alone[n].parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3) for n in NAMES}
    for step in range(4):
        x, y = batch(NAMES, dtype=torch.float32, seed=10 + step)
        out = model(x, labels=y)
        total, terms = ue.loss(out.logits, y, head_logits=out.head_logits)
        assert not terms["fused"].requires_grad  # no fused loss
        opt.zero_grad()
        total.backward()
        opt.step()
        for n in NAMES:
            loss = F.cross_entropy(alone[n]["head"](alone[n]["enc"](x[n])), y)
            opts[n].zero_grad()
            loss.backward()
            opts[n].step()
    for n in NAMES:
        for (name, p), q in zip(model.encoders[n].named_parameters(), alone[n]["enc"].parameters()):
            assert (p - q).abs().max() <= 1e-6, (n, name)
        for a, b in zip(model.encoders[n].buffers(), alone[n]["enc"].buffers()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6)
    assert all(p.grad is None for p in model.fusion.parameters())  # the fusion head is not trained


def test_fit_minimises_validation_nll_over_the_simplex():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (300,), generator=g)
    good = F.one_hot(y, 4).double() * 2 + torch.randn(300, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(300, 4, generator=g, dtype=torch.float64)
    logits = {"a": good, "b": noise}
    w = fit_simplex_weights(logits, y, ["a", "b"])
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()
    assert w[0] > 0.8  # the informative modality dominates
    lp = torch.stack([torch.log_softmax(logits[n], 1) for n in ("a", "b")])
    best = ensemble_nll(lp, y, w)
    for t in torch.linspace(0, 1, 201, dtype=torch.float64):  # a grid over the simplex is never better
        assert ensemble_nll(lp, y, torch.stack([t, 1 - t])) >= best - 1e-9
    # prediction: sum_u w_u log_softmax(o_u)
    pred = ensemble_logits(logits, w, ["a", "b"])
    assert torch.allclose(pred, w[0] * lp[0] + w[1] * lp[1], rtol=1e-12, atol=1e-12)


def test_weights_depend_on_the_validation_outputs_only_and_default_to_equal():
    ue = UnimodalEnsemble(["a", "b", "c"])
    assert torch.equal(ue.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    val = {n: torch.randn(50, 3, generator=g) for n in "abc"}
    y = torch.randint(0, 3, (50,), generator=g)
    w1 = ue.fit_prediction(head_logits=val, labels=y).clone()
    ue2 = UnimodalEnsemble(["a", "b", "c"])
    ue2.predict({n: torch.randn(7, 3) for n in "abc"})  # anything else seen before does not matter
    assert torch.equal(ue2.fit_prediction(head_logits=val, labels=y), w1)
    state = ue.state_dict()
    assert "weights" not in state  # the trainer keeps the fitted weights in the model's combiner
    ue3 = UnimodalEnsemble(["a", "b", "c"])
    ue3.load_state_dict({**state, "weights": w1})  # a state written before the combiner
    assert torch.equal(ue3.weights, w1)


def test_projection_onto_the_simplex():
    assert torch.allclose(project_simplex(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)),
                          torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    assert torch.equal(project_simplex(torch.tensor([2.0, 0.0])), torch.tensor([1.0, 0.0]))
    assert torch.allclose(project_simplex(torch.tensor([1.0, 1.0, 1.0])), torch.full((3,), 1 / 3))


def test_model_ensemble_prediction_uses_the_buffer():
    model = tiny_model(NAMES, prediction="ensemble").eval()
    x, y = batch(NAMES)
    model.set_ensemble_weights({"audio": 0.5, "visual": 0.5, "text": 0.0})
    out = model(x)
    lp = {n: torch.log_softmax(out.head_logits[n], 1) for n in NAMES}
    assert torch.allclose(out.logits, 0.5 * lp["audio"] + 0.5 * lp["visual"], rtol=0, atol=1e-12)
    clone = tiny_model(NAMES, prediction="ensemble", seed=9)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.eval()(x).logits, out.logits)  # the weights travel in the state dict
