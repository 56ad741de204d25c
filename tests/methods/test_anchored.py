"""Anchored fusion (this project's setting): loss, gradients, the validation-fitted blend."""

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import AnchoredFusion, fit_simplex_weights
from ogmge.methods.uni_ensemble import ensemble_nll
from ogmge.training.config import TrainConfig
from support.method_helpers import batch, tiny_model

NAMES = ("audio", "visual", "text")


def test_loss_is_fused_plus_weighted_unimodal_terms():
    model = tiny_model(NAMES, prediction="blend")
    x, y = batch(NAMES)
    out = model(x, labels=y)
    assert out.fused_logits is None  # training mode: logits are the fusion head's
    af = AnchoredFusion(list(NAMES), anchor_weight=0.3)
    total, terms = af.loss(out.logits, y, head_logits=out.head_logits)
    hand = F.cross_entropy(out.logits, y) + 0.3 * sum(F.cross_entropy(out.head_logits[n], y) for n in NAMES)
    assert total.item() == pytest.approx(hand.item(), rel=1e-12, abs=0)
    assert set(terms) == {"fused", *NAMES}


def test_each_encoder_gets_the_fused_gradient_plus_its_own_anchor():
    model = tiny_model(NAMES, prediction="blend")
    x, y = batch(NAMES)
    out = model(x, labels=y)
    AnchoredFusion(list(NAMES)).loss(out.logits, y, head_logits=out.head_logits)[0].backward()
    grads = {n: [p.grad.clone() for p in model.encoders[n].parameters()] for n in NAMES}
    o = model(x, labels=y)  # same batch, train mode: same outputs
    for n in NAMES:
        params = list(model.encoders[n].parameters())
        g_fused = torch.autograd.grad(F.cross_entropy(o.logits, y), params, retain_graph=True)
        g_own = torch.autograd.grad(F.cross_entropy(o.head_logits[n], y), params, retain_graph=True)
        for got, a, b in zip(grads[n], g_fused, g_own):
            assert torch.allclose(got, a + b, rtol=0, atol=1e-12)
        for m in (m for m in NAMES if m != n):  # another modality's anchor never reaches this encoder
            g_other = torch.autograd.grad(F.cross_entropy(o.head_logits[m], y), params, retain_graph=True,
                                          allow_unused=True)
            assert all(g is None or g.abs().max() == 0 for g in g_other)


def test_blend_is_never_worse_than_any_member_on_the_data_it_is_fitted_on():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 5, (400,), generator=g)
    member = {
        "fused": F.one_hot(y, 5).double() * 1.0 + torch.randn(400, 5, generator=g, dtype=torch.float64),
        "audio": F.one_hot(y, 5).double() * 1.5 + torch.randn(400, 5, generator=g, dtype=torch.float64),
        "visual": torch.randn(400, 5, generator=g, dtype=torch.float64),
    }
    af = AnchoredFusion(["audio", "visual"])
    w = af.fit_prediction(head_logits=member, labels=y)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()
    lp = torch.stack([torch.log_softmax(member[m], 1) for m in af.members])
    best = ensemble_nll(lp, y, w)
    for i in range(3):  # every vertex (one member alone) is at least as bad
        assert ensemble_nll(lp, y, F.one_hot(torch.tensor(i), 3).double()) >= best - 1e-12
    assert torch.equal(w, fit_simplex_weights(member, y, ("fused", "audio", "visual")))
    with pytest.raises(ValueError, match="missing \\['fused'\\]"):
        af.fit_prediction(head_logits={"audio": member["audio"], "visual": member["visual"]}, labels=y)


def test_model_blend_prediction_in_evaluation_uses_the_weight_buffer():
    model = tiny_model(NAMES, prediction="blend").eval()
    assert model.prediction_members == ("fused", *NAMES)
    x, _ = batch(NAMES)
    model.set_ensemble_weights({"fused": 0.25, "audio": 0.75, "visual": 0.0, "text": 0.0})
    out = model(x)
    want = 0.25 * torch.log_softmax(out.fused_logits, 1) + 0.75 * torch.log_softmax(out.head_logits["audio"], 1)
    assert torch.allclose(out.logits, want, rtol=0, atol=1e-12)
    clone = tiny_model(NAMES, prediction="blend", seed=5)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.eval()(x).logits, out.logits)
    assert all(p.requires_grad for p in model.fusion.parameters())  # the fusion head trains
    with pytest.raises(ValueError, match="4 finite values"):
        model.set_ensemble_weights([0.5, 0.5])


def test_state_round_trip_and_bad_hyper_parameters():
    af = AnchoredFusion(["a", "b"])
    af.weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    other = AnchoredFusion(["a", "b"])
    assert "weights" not in af.state_dict()  # the fitted weights live in the model's combiner
    other.load_state_dict(af.state_dict())
    other.load_state_dict({**af.state_dict(), "weights": af.weights})  # a state written before the combiner
    assert torch.equal(other.weights, af.weights)
    with pytest.raises(ValueError, match="state is for"):
        AnchoredFusion(["a", "c"]).load_state_dict(af.state_dict())
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="anchor_weight"):
            AnchoredFusion(["a", "b"], anchor_weight=bad)
    with pytest.raises(ValueError, match="two or more"):
        AnchoredFusion(["a"])
    with pytest.raises(ValueError, match="anchored_weight"):
        TrainConfig(method="anchored", anchored_weight=0.0)
