"""PMR against a float64 re-derivation of its equations (class-mean prototypes with EMA,
distance logits, the confidence ratio choosing the slower modality, the PCE term)."""

import pytest
import torch

from ogmge.methods import PMR
from support.method_helpers import CLASSES, batch, tiny_model

NAMES = ("audio", "visual", "text")


def oracle_prototypes(feats, labels, previous, momentum):
    """Per class: the mean of its features (loop), or the previous prototype when absent; then EMA."""
    rows = []
    for c in range(CLASSES):
        members = [feats[i] for i in range(len(labels)) if int(labels[i]) == c]
        rows.append(torch.stack(members).mean(0) if members else previous[c])
    fresh = torch.stack(rows)
    return (1 - momentum) * fresh + momentum * previous


def oracle_loss(out, y, protos, alpha):
    def log_softmax(z):
        return z - torch.log(torch.exp(z).sum(1, keepdim=True))

    def ce(z):
        return -log_softmax(z)[torch.arange(len(y)), y].mean()

    total = ce(out.logits)
    scores, pce = {}, {}
    for u in NAMES:
        f, p = out.features[u], protos[u]
        d = torch.stack([torch.stack([torch.sqrt(((f[i] - p[c]) ** 2).sum()) for c in range(CLASSES)])
                         for i in range(len(y))])
        logits = -d
        probs = torch.exp(log_softmax(logits))
        scores[u] = float(probs.detach()[torch.arange(len(y)), y].sum())
        pce[u] = ce(logits)
    mean = sum(scores.values()) / len(scores)
    weak = {u: scores[u] < mean for u in NAMES}
    for u in NAMES:
        if weak[u]:
            total = total + alpha * pce[u]
    return total, weak


def _setup(alpha=0.7, momentum=0.2):
    model = tiny_model(NAMES, heads=False)
    pmr = PMR(NAMES, CLASSES, alpha=alpha, momentum=momentum)
    x0, y0 = batch(NAMES, n=24, seed=3)
    model.eval()
    with torch.no_grad():
        f0 = model.encode(x0)
    model.train()
    pmr.start_epoch(0, features=f0, labels=y0)
    return model, pmr


def test_prototypes_are_class_means_then_ema_and_absent_class_keeps_its_prototype():
    model, pmr = _setup(momentum=0.3)
    first = {u: p.clone() for u, p in pmr.prototypes.items()}
    x, y = batch(NAMES, n=10, seed=5)
    y = torch.where(y == 2, torch.zeros_like(y), y)  # class 2 absent from this subset
    model.eval()
    with torch.no_grad():
        f = model.encode(x)
    pmr.start_epoch(1, features=f, labels=y)
    for u in NAMES:
        want = oracle_prototypes(f[u], y, first[u], 0.3)
        torch.testing.assert_close(pmr.prototypes[u], want, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(pmr.prototypes[u][2], first[u][2], rtol=1e-6, atol=1e-12)


def test_one_step_loss_and_gradients_match_the_equations():
    model, pmr = _setup(alpha=0.7)
    x, y = batch(NAMES, n=16, seed=7)
    out = model(x, labels=y)
    total, terms = pmr.loss(out.logits, y, features=out.features)
    want, weak = oracle_loss(out, y, pmr.prototypes, 0.7)
    torch.testing.assert_close(total, want, rtol=1e-6, atol=1e-12)
    assert {u: bool(v) for u, v in pmr.last.items()} == weak
    assert any(weak.values()) and not all(weak.values())
    params = [p for p in model.parameters() if p.requires_grad]
    g_ours = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
    g_want = torch.autograd.grad(want, params, allow_unused=True)
    for a, b in zip(g_ours, g_want):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)


def test_two_modalities_follow_the_released_sign_rule():
    names = ("audio", "visual")
    model = tiny_model(names, heads=False)
    pmr = PMR(names, CLASSES, alpha=1.0)
    x, y = batch(names, n=20, seed=11)
    model.eval()
    with torch.no_grad():
        pmr.start_epoch(0, features=model.encode(x), labels=y)
    model.train()
    out = model(x, labels=y)
    pmr.loss(out.logits, y, features=out.features)
    s = {}
    for u in names:
        d = torch.cdist(out.features[u].detach(), pmr.prototypes[u])
        s[u] = torch.softmax(-d, 1)[torch.arange(len(y)), y].sum()
    rho = float(s["audio"] / s["visual"])
    assert rho != 1.0
    # rho > 1: the visual PCE gets alpha (lam), else the audio one (beta)
    assert float(pmr.last["visual"]) == float(rho > 1) and float(pmr.last["audio"]) == float(rho < 1)


def test_outside_its_window_the_loss_is_the_fused_cross_entropy():
    model, pmr = _setup()
    pmr.end = 3
    pmr.start_epoch(4, features={u: torch.randn(6, 5, dtype=torch.float64) for u in NAMES},
                    labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    x, y = batch(NAMES, n=8, seed=2)
    out = model(x, labels=y)
    total, terms = pmr.loss(out.logits, y, features=out.features)
    torch.testing.assert_close(total, torch.nn.functional.cross_entropy(out.logits, y), rtol=1e-12, atol=0)


def test_state_round_trip_and_bad_options_are_named():
    _, pmr = _setup()
    other = PMR(NAMES, CLASSES, alpha=0.7)
    other.load_state_dict(pmr.state_dict())
    for u in NAMES:
        assert torch.equal(other.prototypes[u], pmr.prototypes[u])
    for kw, name in ((dict(alpha=0), "alpha"), (dict(momentum=1.0), "momentum"), (dict(subset=0), "subset"),
                     (dict(start=5, end=2), "end")):
        with pytest.raises(ValueError, match=name):
            PMR(NAMES, CLASSES, **kw)
    with pytest.raises(ValueError, match="modalities"):
        other.load_state_dict({**pmr.state_dict(), "modalities": ["a", "b"]})


def test_registered_with_the_authors_defaults_and_built_from_a_context():
    from ogmge import methods
    from ogmge.methods import BuildContext

    cls = methods.get("pmr")
    assert cls is PMR and {o.name: o.default for o in cls.options} == {
        "alpha": 1.0, "momentum": 0.2, "start": 0, "end": 100, "subset": 0.1}
    assert all("main_Prototype_grad.py:" in o.source for o in cls.options)
    m = cls.build(BuildContext(modalities=NAMES, num_classes=CLASSES), alpha=0.5)
    assert m.alpha == 0.5 and m.modalities == NAMES and m.num_classes == CLASSES
    with pytest.raises(ValueError, match="pmr option momentum.*1.5"):
        cls.build(BuildContext(modalities=NAMES, num_classes=CLASSES), momentum=1.5)
