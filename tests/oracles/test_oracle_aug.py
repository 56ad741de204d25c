"""AUG's step and assignment re-derived in float64 from the released update
(njustkmg/NeurIPS25-AUG train_CREMAD.py:47-75, model/AudioVideo.py:75-104), written
independently of ``ogmge.methods.aug``.

Tolerance, fixed before any comparison: ``rtol=1e-6, atol=1e-12 * scale`` (scale: the
largest magnitude compared, at least 1).
"""

import torch
from torch import nn

from ogmge.methods import AUG, AUGHead, StepTools
from ogmge.methods.aug import confidence_ratios, modality_to_boost
from ogmge.models import MultimodalClassifier

C, B, D, FEAT, H = 4, 12, 5, 6, 7
NAMES = ("audio", "visual")
LR, BETA = 0.3, 0.5


def close(actual, expected):
    scale = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12 * scale)


class Lin(nn.Module):
    """A bias-free linear encoder ``phi = W x``."""

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = FEAT
        self.w = nn.Parameter(torch.randn(FEAT, D, dtype=torch.float64))

    def forward(self, x, lengths=None):
        return x @ self.w.t()


def setup():
    torch.manual_seed(0)
    head = AUGHead({n: FEAT for n in NAMES}, C, hidden=H).double()
    model = MultimodalClassifier({n: Lin() for n in NAMES}, head).double().train()
    head.add_layer("audio", torch.Generator().manual_seed(5))  # audio: one boosting layer
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, C, (B,), generator=g)
    x = {n: torch.randn(B, D, generator=g, dtype=torch.float64) for n in NAMES}
    return model, head, x, y


def oracle(params, x, y, *, beta=BETA, order=NAMES):
    """The released two-step update on plain float64 tensors (SGD, no momentum)."""
    p = {k: v.detach().clone() for k, v in params.items()}

    def ce(logits):
        return -(logits.log_softmax(1)[torch.arange(B), y]).mean()

    for u in order:
        leaf = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        phi = x[u] @ leaf[f"encoders.{u}.w"].t()
        G, g = leaf["fusion.fc_out.weight"], leaf["fusion.fc_out.bias"]
        z = torch.relu(phi @ leaf[f"fusion.embed.{u}.0.weight"].t() + leaf[f"fusion.embed.{u}.0.bias"]) @ G.t() + g
        key = f"fusion.boost.{u}.0.weight"
        if key in leaf:
            h = torch.relu(phi @ leaf[key].t() + leaf[f"fusion.boost.{u}.0.bias"])
            last = h @ G.t() + g
            prev, total = z, z + last
            conf = prev.detach().softmax(1)[torch.arange(B), y]
            soft_target_ce = (conf * -(last.log_softmax(1)[torch.arange(B), y])).mean()
            loss = ce(total) + ce(prev) + ce(last) - beta * soft_target_ce
        else:
            loss = ce(z)
        names = list(leaf)
        grads = torch.autograd.grad(loss, [leaf[k] for k in names], allow_unused=True)
        for k, gr in zip(names, grads):
            if gr is not None:
                p[k] = p[k] - LR * gr
    return p


def run_ours(model, head, x, y):
    method = AUG(head, residual_weight=BETA)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    tools = StepTools(forward=lambda b: model(b["inputs"], labels=b["labels"]), loss=lambda out, lab: (None, {}),
                      backward=lambda total, terms: total.backward(), guard=lambda total: None,
                      optimizer_step=lambda reason: opt.step(), zero_grad=lambda: opt.zero_grad(set_to_none=True),
                      optimizer=opt)
    method.train_step({"inputs": x, "labels": y, "lengths": {}}, tools, epoch=0)
    return method, {k: v.detach().clone() for k, v in model.named_parameters()}


def test_one_batch_two_steps_match_the_released_update():
    model, head, x, y = setup()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    expected = oracle(before, x, y)
    _, after = run_ours(model, head, x, y)
    assert set(after) == set(expected)
    for k in expected:
        close(after[k], expected[k])
    # the oracle can fail: the opposite residual sign, or video first, moves the weights elsewhere
    for wrong in (oracle(before, x, y, beta=-BETA), oracle(before, x, y, order=NAMES[::-1])):
        assert any(not torch.allclose(after[k], wrong[k], rtol=1e-6, atol=1e-12) for k in expected)


def test_confidences_and_the_assignment_by_hand():
    model, head, x, y = setup()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    method, _ = run_ours(model, head, x, y)
    # audio's confidence at its step (before its update); visual's after audio's update of g
    phi_a = x["audio"] @ before["encoders.audio.w"].t()
    G, g = before["fusion.fc_out.weight"], before["fusion.fc_out.bias"]
    z_a = (torch.relu(phi_a @ before["fusion.embed.audio.0.weight"].t() + before["fusion.embed.audio.0.bias"]) @ G.t()
           + g + torch.relu(phi_a @ before["fusion.boost.audio.0.weight"].t() + before["fusion.boost.audio.0.bias"])
           @ G.t() + g)
    s_a = z_a.softmax(1)[torch.arange(B), y].sum()
    mid = oracle(before, x, y, order=("audio",))
    phi_v = x["visual"] @ mid["encoders.visual.w"].t()
    z_v = (torch.relu(phi_v @ mid["fusion.embed.visual.0.weight"].t() + mid["fusion.embed.visual.0.bias"])
           @ mid["fusion.fc_out.weight"].t() + mid["fusion.fc_out.bias"])
    s_v = z_v.softmax(1)[torch.arange(B), y].sum()
    close(method.scores["audio"], s_a)
    close(method.scores["visual"], s_v)
    ratio = float(s_a / s_v)  # train_CREMAD.py:96
    released = "visual" if ratio > 1.01 else "audio" if ratio < 0.99 else None  # l.222-228
    layers = dict(head.layers())
    method.end_epoch(0)
    assert head.layers() == layers  # added at the next epoch's start
    method.begin_epoch(1, train_size=B)
    assert method.ratios["audio"] == ratio or abs(method.ratios["audio"] - ratio) <= 1e-12 * max(ratio, 1)
    grown = [n for n in NAMES if head.layers()[n] > layers[n]]
    assert grown == ([] if released is None else [released])


def test_three_modality_ratios_are_each_over_the_mean_of_the_others():
    s = {"a": torch.tensor(3.0, dtype=torch.float64), "b": torch.tensor(5.0, dtype=torch.float64),
         "c": torch.tensor(10.0, dtype=torch.float64)}
    got = confidence_ratios(s)
    close(got["a"], torch.tensor(3.0 / 7.5, dtype=torch.float64))
    close(got["b"], torch.tensor(5.0 / 6.5, dtype=torch.float64))
    close(got["c"], torch.tensor(10.0 / 4.0, dtype=torch.float64))
    assert modality_to_boost(got, 1.0, 0.01) == "a"
    assert modality_to_boost({"a": 1.005, "b": 0.995, "c": 1.0}, 1.0, 0.01) is None
