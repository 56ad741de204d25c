"""MASAM against a float64 reference of its step written from the equations (one autograd
pass per loss and encoder, the perturbed point built by hand); N = 3; both projection
branches; the released per-tensor variant; BatchNorm statistics; training by name."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import MASAM
from support.method_helpers import FEAT, batch, tiny_model

NAMES = ("audio", "visual", "text")
RHO, W, BETA = 0.3, 0.8, 0.91


def _force(model, sign: float, seed: int = 0):
    """Heads = sign * their fusion block + noise: cos(g_u, g_mm) takes the sign of ``sign``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.fusion.fc.weight
        w.copy_(0.05 * torch.randn(w.shape, generator=g, dtype=torch.float64))
        model.fusion.fc.bias.zero_()
        for i, n in enumerate(NAMES):
            block = w[:, i * FEAT:(i + 1) * FEAT]
            model.heads[n].weight.copy_(sign * block + 0.02 * torch.randn(block.shape, generator=g,
                                                                          dtype=torch.float64))
            model.heads[n].bias.zero_()


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def reference(model, x, y, ema, last, *, released=False):
    """The step from the module docstring's equations, independently of ogmge.methods."""
    out = model(x, labels=y)
    l_mm = F.cross_entropy(out.logits, y)
    l_u = {n: F.cross_entropy(out.head_logits[n], y) for n in NAMES}
    total = l_mm + sum(l_u.values())
    enc = {n: list(model.encoders[n].parameters()) for n in NAMES}
    rest = [p for name, p in model.named_parameters() if not name.startswith("encoders.")]
    first_rest = torch.autograd.grad(total, rest, retain_graph=True, allow_unused=True)
    scores, pert = {}, {}
    for n in NAMES:
        gm = torch.autograd.grad(l_mm, enc[n], retain_graph=True)
        gu = torch.autograd.grad(l_u[n], enc[n], retain_graph=True)
        a, b = _flat(gu), _flat(gm)
        if released:
            cos_t = [float(torch.dot(u.flatten(), m.flatten()) / max(float(u.norm() * m.norm()), 1e-8))
                     for u, m in zip(gu, gm)]
            cos = sum(cos_t) / len(cos_t)
            dirs = []
            for u, m in zip(gu, gm):
                d = float(torch.dot(u.flatten(), m.flatten()))
                mm = float(m.norm() ** 2)
                dirs.append(m.clone() if d < 0 else (d / mm if mm > 0 else 0.0) * m)
            factor = cos_t[-1]
        else:
            cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
            d = float(torch.dot(a, b))
            dirs = [m.clone() if d < 0 else d / float(b.norm() ** 2) * m for m in gm]
            factor = cos
        norm = float(_flat(dirs).norm())
        c = factor if factor > 0 else 1.0
        pert[n] = [RHO * c * t / (norm + 1e-12) for t in dirs]
        new_ema = BETA * ema[n] + (1 - BETA) * float(l_u[n].detach())
        decay = max(0.0, last[n] - new_ema)
        scores[n] = W * decay + (1 - W) * cos
    dom = max(NAMES, key=lambda n: scores[n])
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p, e in zip(twin.encoders[dom].parameters(), pert[dom]):
            p.add_(e)
    out2 = twin(x, labels=y)
    total2 = F.cross_entropy(out2.logits, y) + sum(F.cross_entropy(out2.head_logits[n], y) for n in NAMES)
    grads = {}
    for n in NAMES:
        for name_p, g in zip([nm for nm, _ in model.encoders[n].named_parameters()],
                             torch.autograd.grad(total2, list(twin.encoders[n].parameters()), retain_graph=True)):
            grads[f"encoders.{n}.{name_p}"] = g
    rest_names = [name for name, _ in model.named_parameters() if not name.startswith("encoders.")]
    for name, g in zip(rest_names, first_rest):
        grads[name] = g
    return grads, scores, dom


def _state(ema, last):
    return {"ema": {n: torch.tensor(v) for n, v in ema.items()}, "last": {n: torch.tensor(v) for n, v in last.items()}}


def _ours(model, x, y, ema, last, released=False):
    m = MASAM(model.encoders, rho=RHO, score_weight=W, momentum=BETA, as_released=released)
    m.load_state_dict(_state(ema, last))

    def recompute():
        out = model(x, labels=y)
        return m.loss(out.logits, y, head_logits=out.head_logits)

    total, terms = recompute()
    model.zero_grad(set_to_none=True)
    m.backward(total, terms, recompute=recompute)
    return m


@pytest.mark.parametrize("released", [False, True])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_step_matches_the_float64_reference(sign, released):
    model = tiny_model(NAMES).eval()  # eval: both passes see the same BatchNorm normalisation
    _force(model, sign)
    x, y = batch(NAMES)
    # loss history making "visual" (not the first modality) dominant through its loss decrease
    ema = {"audio": 1.1, "visual": 1.1, "text": 1.1}
    last = {"audio": 0.9, "visual": 1.6, "text": 1.0}
    weights = copy.deepcopy(model.state_dict())
    ref, ref_scores, dom = reference(model, x, y, ema, last, released=released)
    assert dom == "visual"
    m = _ours(model, x, y, ema, last, released)
    for k, v in model.state_dict().items():  # the weights are back at theta
        if torch.is_tensor(v):
            assert torch.equal(v, weights[k]), k
    assert int(m.dominant) == NAMES.index("visual")
    for n in NAMES:
        assert float(m.scores[n]) == pytest.approx(ref_scores[n], rel=1e-6, abs=1e-12)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[name], rtol=1e-6, atol=1e-12), name


def test_the_perturbation_changes_the_encoder_gradients_and_only_along_the_dominant_encoder():
    """rho = 0 gives the plain first-pass gradient of the total loss; rho > 0 changes it."""
    model = tiny_model(NAMES).eval()
    x, y = batch(NAMES)
    out = model(x, labels=y)
    total = F.cross_entropy(out.logits, y) + sum(F.cross_entropy(out.head_logits[n], y) for n in NAMES)
    plain = dict(zip([n for n, _ in model.named_parameters()],
                     torch.autograd.grad(total, list(model.parameters()), allow_unused=True)))
    for rho, same in ((0.0, True), (0.3, False)):
        m = MASAM(model.encoders, rho=rho)

        def recompute(m=m):
            o = model(x, labels=y)
            return m.loss(o.logits, y, head_logits=o.head_logits)

        t, terms = recompute()
        model.zero_grad(set_to_none=True)
        m.backward(t, terms, recompute=recompute)
        enc = [n for n, _ in model.named_parameters() if n.startswith("encoders.") and not n.endswith("dead")]
        equal = all(torch.allclose(dict(model.named_parameters())[n].grad, plain[n], rtol=1e-12, atol=1e-15)
                    for n in enc)
        assert equal is same
        for n, p in model.named_parameters():
            if not n.startswith("encoders."):
                assert torch.allclose(p.grad, plain[n], rtol=1e-12, atol=1e-15), n


def test_loss_ema_and_decrease_over_steps():
    from ogmge.methods.masam import loss_decrease

    ema, d = loss_decrease(None, None, torch.tensor(2.0, dtype=torch.float64), 0.91)
    assert float(ema) == 2.0 and float(d) == 0.0
    ema2, d2 = loss_decrease(ema, torch.tensor(2.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                             0.91)
    assert float(ema2) == pytest.approx(0.91 * 2 + 0.09 * 1, rel=1e-12)
    assert float(d2) == pytest.approx(2.0 - (0.91 * 2 + 0.09), rel=1e-12)
    _, d3 = loss_decrease(ema2, torch.tensor(0.5, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64), 0.91)
    assert float(d3) == 0.0  # clipped at zero


def test_needs_recompute_and_refuses_ddp_with_its_reason():
    from ogmge.training.balancing import check_method

    model = tiny_model(NAMES)
    m = MASAM(model.encoders)
    x, y = batch(NAMES)
    out = model(x, labels=y)
    total, terms = m.loss(out.logits, y, head_logits=out.head_logits)
    with pytest.raises(ValueError, match="recompute"):
        m.backward(total, terms)
    with pytest.raises(ValueError, match="'masam' is not supported under DDP .*dominant modality"):
        check_method(m, distributed=True, has_val=True)
    with pytest.raises(ValueError, match="rho"):
        MASAM(model.encoders, rho=-1)


def test_the_second_pass_leaves_batchnorm_statistics_alone():
    """A training-mode MASAM step moves BatchNorm statistics exactly as one forward pass does."""
    model = tiny_model(NAMES).train()
    x, y = batch(NAMES)
    twin = copy.deepcopy(model)
    twin(x)  # one plain forward pass
    m = MASAM(model.encoders, modules=[model.heads, model.fusion])

    def recompute():
        o = model(x, labels=y)
        return m.loss(o.logits, y, head_logits=o.head_logits)

    total, terms = recompute()
    m.backward(total, terms, recompute=recompute)
    before, after = twin.state_dict(), model.state_dict()
    for k, v in before.items():
        if torch.is_tensor(v):
            assert torch.equal(v, after[k]), k
    model(x)
    assert not torch.equal(before["encoders.audio.bn.running_mean"], model.state_dict()["encoders.audio.bn.running_mean"])



def test_trains_by_name_on_three_modality_byo_data(tmp_path):
    """``method: masam`` through the trainer on bring-your-own data with three modalities."""
    from ogmge.data.byo import save_byo
    from ogmge.training import TrainConfig
    from ogmge.training.loop import Trainer

    rng = np.random.default_rng(0)
    n = 48
    labels = np.arange(n) % 3
    data = {k: (rng.normal(size=(n, 4)) + (i + 1) * 0.5 * labels[:, None]).astype(np.float32)
            for i, k in enumerate(("a", "b", "c"))}
    path = save_byo(tmp_path / "three.npz", data, labels, kinds={k: "vector" for k in data})
    cfg = TrainConfig.from_dict(dict(dataset="byo", data=str(path), method="masam", epochs=2, batch_size=16,
                                     lr=0.01, device="cpu", progress=False, out=str(tmp_path / "run"),
                                     model_options={"hidden": 8, "out_dim": 8}))
    tr = Trainer(cfg)
    assert type(tr.method).__name__ == "MASAM" and tr.method.modalities == ("a", "b", "c")
    result = tr.fit()
    assert result.history[-1]["train/skipped_steps"] == 0
    trace = [r for r in (result.run_dir / "trace.jsonl").read_text().splitlines() if r]
    assert "masam_dominant/c" in trace[0] and "masam_score/a" in trace[0]


def _one_step(path: str):
    from ogmge.methods import BuildContext, StepTools, get

    model = tiny_model(NAMES).train()
    x, y = batch(NAMES)
    ctx = BuildContext(NAMES, encoders=dict(model.encoders.items()), heads=dict(model.heads.items()),
                       fusion=model.fusion)
    m = get("masam").build(ctx, rho=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def recompute():
        o = model(x, labels=y)
        return m.loss(o.logits, y, head_logits=o.head_logits)

    if path == "tools":
        tools = StepTools(
            forward=lambda b: model(b["inputs"], labels=b["labels"]),
            loss=lambda out, labels: m.loss(out.logits, labels, head_logits=out.head_logits),
            backward=lambda total, terms: m.backward(total, terms),
            guard=lambda total: None,
            optimizer_step=lambda skip: opt.step(),
            zero_grad=lambda: opt.zero_grad(set_to_none=True),
            optimizer=opt,
            params=list(model.parameters()),
        )
        m.train_step({"inputs": x, "labels": y}, tools, epoch=0)
    else:
        opt.zero_grad(set_to_none=True)
        total, terms = recompute()
        m.backward(total, terms, recompute=recompute)
        opt.step()
    return model.state_dict()


def test_registered_and_its_train_step_is_the_backward_path():
    """``get("masam").build(ctx)`` and one ``train_step`` through ``StepTools`` give the same
    weights as ``backward(recompute=...)`` and an optimizer step."""
    from ogmge.methods import get

    cls = get("masam")
    assert cls is MASAM and cls.ddp == "refused" and cls.owns_step
    a, b = _one_step("tools"), _one_step("backward")
    for k, v in a.items():
        if torch.is_tensor(v):
            assert torch.equal(v, b[k]), k
