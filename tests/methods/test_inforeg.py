"""InfoReg against float64 hand computations: the window statistic (ours and the released
arithmetic), the Fisher trace, one step's proximal pull on N = 3 encoders, exact resume."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import InfoReg
from ogmge.methods.inforeg import released_window_statistic, window_statistic
from support.method_helpers import batch, tiny_model

NAMES = ("audio", "visual", "text")


def test_window_statistic_by_hand():
    t = [4.0, 3.0, 3.5, 2.0]
    assert window_statistic(t, 3) == pytest.approx((2.0 - 4.0) / (3.0 + 3.5 + 2.0), rel=1e-12)
    assert window_statistic(t, 4) == math.inf  # fewer than w + 1 traces: open
    # the released arithmetic on a short list is T[-1] / sum(T), and 1 with no history
    assert released_window_statistic([], 10) == 1.0
    assert released_window_statistic(t, 10) == pytest.approx(2.0 / sum(t), rel=1e-12)
    long = [float(i + 1) for i in range(12)]
    tr1, tr2 = sum(long[-10:]) / 10, sum(long[-11:-1]) / 10
    assert released_window_statistic(long, 10) == pytest.approx((tr1 - tr2) / tr1, rel=1e-12)
    assert window_statistic(long, 10) == pytest.approx((12.0 - 2.0) / sum(long[-10:]), rel=1e-12)


def test_window_scales_with_the_budget():
    enc = tiny_model(NAMES).encoders
    assert InfoReg(enc, epochs=12).effective_window == 2
    assert InfoReg(enc, epochs=50).effective_window == 10
    assert InfoReg(enc, epochs=12, scale_window=False).effective_window == 10
    assert InfoReg(enc, epochs=3).effective_window == 1


def _step(model, method, x, y, epoch):
    out = model(x, labels=y)
    total, terms = method.loss(out.logits, y, head_logits=out.head_logits)
    model.zero_grad(set_to_none=True)
    total.backward()
    method.after_backward(modality_logits=out.modality_logits, labels=y, epoch=epoch)
    return out


@pytest.mark.parametrize("released", [False, True])
def test_one_step_matches_the_float64_reference(released):
    """Epoch 1's second step after one epoch of history: the pull on the argmax of S_u only,
    beta * exp(tanh(S_top - S_second)) * (theta - theta_0), theta_0 the epoch-start weights."""
    model = tiny_model(NAMES)
    x, y = batch(NAMES)
    m = InfoReg(model.encoders, beta=0.95, threshold=0.05, window=1, scale_window=False, as_released=released)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    _step(model, m, x, y, epoch=0)
    opt.step()
    theta0 = copy.deepcopy(model.state_dict())  # epoch 1 starts here
    _step(model, m, *batch(NAMES, seed=4), epoch=1)
    opt.step()
    x1, y1 = batch(NAMES, seed=5)
    # reference, independently: plain gradients, head scores, Fisher traces of epoch 0
    ref_model = copy.deepcopy(model)
    out = ref_model(x1, labels=y1)
    total = F.cross_entropy(out.logits, y1) + sum(F.cross_entropy(out.head_logits[n], y1) for n in NAMES)
    names = [n for n, _ in ref_model.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(total, list(ref_model.parameters()), allow_unused=True)))
    s = {n: float(out.head_logits[n].detach().softmax(1)[torch.arange(len(y1)), y1].sum()) for n in NAMES}
    _step(model, m, x1, y1, epoch=1)
    assert len(m.traces["audio"]) == 1 and m.traces["audio"][0] > 0
    w = m.effective_window
    k = {n: (released_window_statistic(m.traces[NAMES[0]], w) if released else window_statistic(m.traces[n], w))
         for n in NAMES}
    top = max(NAMES, key=lambda n: s[n])
    second = max(v for n, v in s.items() if n != top)
    base = 0.95 if (not released or top == NAMES[0]) else 0.1
    beta = base * math.exp(math.tanh(s[top] - second)) if k[top] > 0.05 else 0.0
    for name, p in model.named_parameters():
        want = grads[name] if grads[name] is not None else torch.zeros_like(p)
        if name.startswith(f"encoders.{top}."):
            want = want + beta * (p.detach() - theta0[name])
        assert torch.allclose(p.grad, want, rtol=1e-6, atol=1e-12), name
    assert beta > 0 and float(m.strengths[top]) == pytest.approx(beta, rel=1e-6)
    assert any(not torch.equal(p.detach(), theta0[n]) for n, p in model.named_parameters()
               if n.startswith(f"encoders.{top}."))  # the pull is not zero
    assert all(float(m.strengths[n]) == 0.0 for n in NAMES if n != top)


def test_fisher_trace_is_the_sum_of_mean_squared_weight_gradients():
    model = tiny_model(NAMES)
    m = InfoReg(model.encoders)
    want = {n: 0.0 for n in NAMES}
    for seed in (1, 2):
        x, y = batch(NAMES, seed=seed)
        _step(model, m, x, y, epoch=0)
        for n in NAMES:  # the loss gradient, before the pull (no pull in epoch 0: theta = theta_0)
            want[n] += sum(float(p.grad.pow(2).mean()) for p in model.encoders[n].parameters() if p.dim() >= 2)
    x, y = batch(NAMES, seed=3)
    _step(model, m, x, y, epoch=1)
    for n in NAMES:
        assert m.traces[n][0] == pytest.approx(want[n], rel=1e-6)


def test_refuses_ddp_and_needs_heads():
    from ogmge.training.balancing import check_method

    model = tiny_model(NAMES)
    m = InfoReg(model.encoders)
    with pytest.raises(ValueError, match="'inforeg' is not supported under DDP .*own batch"):
        check_method(m, distributed=True, has_val=True)
    x, y = batch(NAMES)
    out = model(x, labels=y)
    with pytest.raises(ValueError, match="head_logits"):
        m.loss(out.logits, y)


def test_trains_by_name_on_three_modality_byo_data_and_resumes_exactly(tmp_path):
    import numpy as np

    from ogmge.data.byo import save_byo
    from ogmge.training import TrainConfig, load_checkpoint_file, train

    rng = np.random.default_rng(0)
    n = 48
    labels = np.arange(n) % 3
    data = {k: (rng.normal(size=(n, 4)) + (i + 1) * 0.5 * labels[:, None]).astype(np.float32)
            for i, k in enumerate(("a", "b", "c"))}
    path = save_byo(tmp_path / "three.npz", data, labels, kinds={k: "vector" for k in data})

    def cfg(out):
        return TrainConfig.from_dict(dict(dataset="byo", data=str(path), method="inforeg", epochs=3, batch_size=16,
                                          lr=0.01, device="cpu", progress=False, out=str(out),
                                          model_options={"hidden": 8, "out_dim": 8}))

    full = train(cfg(tmp_path / "full"))

    class Stop(Exception):
        pass

    def stop(event, info):
        if info["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train(cfg(tmp_path / "cut"), callbacks=[stop])
    resumed = train(cfg(tmp_path / "cut"), resume=True)
    a, b = (load_checkpoint_file(r.run_dir / "last.pt") for r in (full, resumed))
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert a["method"] == b["method"] and len(a["method"]["traces"]["c"]) == 2


def test_registered_and_built_from_a_context_with_the_runs_epochs():
    from ogmge.methods import BuildContext, get

    model = tiny_model(NAMES)
    cls = get("inforeg")
    m = cls.build(BuildContext(NAMES, encoders=dict(model.encoders.items()), heads=dict(model.heads.items()),
                               fusion=model.fusion, epochs=12), window=10)
    assert isinstance(m, InfoReg) and m.effective_window == 2 and cls.ddp == "refused" and cls.needs_heads
    with pytest.raises(ValueError, match="window"):
        cls.build(BuildContext(NAMES, encoders=dict(model.encoders.items())), window=0)
