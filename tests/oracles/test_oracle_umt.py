"""UMT's step re-derived from the paper's loss in float64 tensor algebra, independently of ``ogmge``.

Model: linear encoders ``f_u = x_u W_u^T``, a linear fusion head ``z = sum_u f_u V_u^T + c`` and
linear modality heads ``h_u = f_u H_u^T``; teachers ``t_u = x_u T_u^T`` (frozen). Student phase:
``L = CE(z, y) + lam * sum_u mean((f_u - t_u)^2)``; teacher phase: ``L = sum_u CE(h_u, y)``. The
oracle writes the gradients by hand (softmax minus one-hot; the MSE's ``2 (f - t) / (B D)``) and
takes one SGD step. Tolerance, fixed before any comparison: ``rtol=1e-6, atol=1e-12``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from ogmge.methods import UMT
from ogmge.methods.registry import StepTools

NAMES = ("a", "b", "c")
B, IN, D, C = 7, 5, 4, 3
LR, LAM = 0.1, 2.5


@dataclass
class Out:
    logits: torch.Tensor
    features: dict
    head_logits: dict


class Lin(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = nn.Parameter(w.clone())

    def forward(self, x):
        return x @ self.weight.T


class Model(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.encoders = nn.ModuleDict({u: Lin(p["W"][u]) for u in NAMES})
        self.fusion = nn.ParameterDict({u: nn.Parameter(p["V"][u].clone()) for u in NAMES})
        self.bias = nn.Parameter(p["c"].clone())
        self.heads = nn.ModuleDict({u: Lin(p["H"][u]) for u in NAMES})

    def forward(self, inputs):
        f = {u: self.encoders[u](inputs[u]) for u in NAMES}
        z = sum(f[u] @ self.fusion[u].T for u in NAMES) + self.bias
        return Out(z, f, {u: self.heads[u](f[u]) for u in NAMES})


def params(seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    return {"W": {u: r(D, IN) for u in NAMES}, "V": {u: r(C, D) for u in NAMES}, "c": r(C),
            "H": {u: r(C, D) for u in NAMES}, "T": {u: r(D, IN) for u in NAMES},
            "x": {u: r(B, IN) for u in NAMES}, "y": torch.randint(0, C, (B,), generator=g)}


def ours(p, *, teacher_phase: bool):
    model = Model(p)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    teachers = None if teacher_phase else {u: Lin(p["T"][u]) for u in NAMES}
    method = UMT(dict(model.encoders.items()), lam=LAM, teachers=teachers, teacher_epochs=1, epochs=2)
    tools = StepTools(forward=lambda b: model(b["inputs"]),
                      loss=lambda out, y: method.loss(out.logits, y, head_logits=out.head_logits),
                      backward=lambda total, terms: total.backward(), guard=lambda total: None,
                      optimizer_step=lambda skip: opt.step(), zero_grad=lambda: opt.zero_grad(set_to_none=True),
                      optimizer=opt)
    method.train_step({"inputs": p["x"], "labels": p["y"], "lengths": {}}, tools, epoch=0)
    return model


def ce_grad(z, y):
    e = torch.exp(z - z.max(1, keepdim=True).values)
    prob = e / e.sum(1, keepdim=True)
    onehot = torch.zeros_like(z)
    onehot[torch.arange(len(y)), y] = 1.0
    return (prob - onehot) / len(y)


def oracle(p, *, teacher_phase: bool, lam=LAM):
    """New parameters after one SGD step, gradients by hand."""
    x, y = p["x"], p["y"]
    f = {u: x[u] @ p["W"][u].T for u in NAMES}
    new = {"W": {}, "V": {}, "H": {}, "c": p["c"].clone()}
    if teacher_phase:
        for u in NAMES:
            g = ce_grad(f[u] @ p["H"][u].T, y)  # dCE_u / dh_u
            new["H"][u] = p["H"][u] - LR * g.T @ f[u]
            new["W"][u] = p["W"][u] - LR * (g @ p["H"][u]).T @ x[u]
            new["V"][u] = p["V"][u].clone()  # the fusion head is not trained
        return new
    z = sum(f[u] @ p["V"][u].T for u in NAMES) + p["c"]
    g = ce_grad(z, y)
    new["c"] = p["c"] - LR * g.sum(0)
    for u in NAMES:
        t = x[u] @ p["T"][u].T
        df = g @ p["V"][u] + lam * 2.0 * (f[u] - t) / (B * D)
        new["V"][u] = p["V"][u] - LR * g.T @ f[u]
        new["W"][u] = p["W"][u] - LR * df.T @ x[u]
        new["H"][u] = p["H"][u].clone()  # the modality heads are not trained in the student phase
    return new


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("teacher_phase", [False, True], ids=["student-phase", "teacher-phase"])
def test_one_step_matches_the_hand_derived_update(teacher_phase):
    p = params()
    model, want = ours(p, teacher_phase=teacher_phase), oracle(p, teacher_phase=teacher_phase)
    for u in NAMES:
        close(model.encoders[u].weight.detach(), want["W"][u])
        close(model.fusion[u].detach(), want["V"][u])
        close(model.heads[u].weight.detach(), want["H"][u])
    close(model.bias.detach(), want["c"])


def test_the_oracle_can_fail():
    """Without the distillation term (or with it on the wrong side) the oracle's encoders differ."""
    p = params(1)
    model = ours(p, teacher_phase=False)
    for lam in (0.0, -LAM):
        wrong = oracle(p, teacher_phase=False, lam=lam)
        with pytest.raises(AssertionError):
            for u in NAMES:
                close(model.encoders[u].weight.detach(), wrong["W"][u])
