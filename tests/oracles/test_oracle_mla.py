"""MLA re-derived from the paper's equations in float64, independently of ogmge.methods.mla.

Two batches of alternating unimodal steps (three modalities, linear encoders, a shared
linear head, plain SGD), with closed-form cross-entropy gradients; the head's weight
gradient replaced by ``g P^T`` with the recursive projector
``P <- (P - P s s^T P / (alpha + s^T P s)) / ||.||_F``, ``alpha = 0.1 ** (b / n_b + 1)``,
skipped on the run's first step. Then the test-time fusion: per-sample entropies and
weights ``exp(max e - e_m) / sum_k exp(max e - e_k)``. Tolerance rtol 1e-6, fixed in advance.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ogmge.methods.mla import MLA, SharedHead
from ogmge.methods.registry import StepTools
from ogmge.models.classifier import ModelOutput

pytestmark = pytest.mark.filterwarnings("ignore")

MODS = ("a", "b", "c")
B, D, C, LR = 5, 4, 3, 0.3
IN = {"a": 6, "b": 5, "c": 3}


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    enc = {m: torch.randn(D, IN[m], generator=g, dtype=torch.float64) * 0.5 for m in MODS}
    W = torch.randn(C, D, generator=g, dtype=torch.float64) * 0.5
    bias = torch.randn(C, generator=g, dtype=torch.float64) * 0.1
    batches = [({m: torch.randn(B, IN[m], generator=g, dtype=torch.float64) for m in MODS},
                torch.randint(0, C, (B,), generator=g)) for _ in range(2)]
    return enc, W, bias, batches


def _softmax(o):
    e = torch.exp(o - o.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def _hand(enc, W, bias, batches, *, project=True, add=False):
    """The expected weights after the two batches (written from the equations)."""
    enc = {m: v.clone() for m, v in enc.items()}
    W, bias = W.clone(), bias.clone()
    P = torch.eye(D, dtype=torch.float64)
    steps, n_b = 0, 4  # train_size 4 * B
    for b_idx, (x, y) in enumerate(batches):
        Y = torch.zeros(B, C, dtype=torch.float64)
        Y[torch.arange(B), y] = 1.0
        feats = {m: x[m] @ enc[m].t() for m in MODS}  # one encoder pass per batch
        for m in MODS:
            z = feats[m]
            p = _softmax(z @ W.t() + bias)
            delta = (p - Y) / B  # dCE/dlogits (mean over the batch)
            gW = delta.t() @ z
            gb = delta.sum(0)
            gE = (delta @ W).t() @ x[m]
            if project and steps > 0:
                alpha = 0.1 ** (b_idx / n_b + 1)
                s = z.mean(0).reshape(D, 1)
                Ps = P @ s
                P = P - (Ps @ Ps.t()) / (alpha + float(s.t() @ P @ s))
                P = P / math.sqrt(float((P * P).sum()))
                gW = gW + gW @ P.t() if add else gW @ P.t()
            W = W - LR * gW
            bias = bias - LR * gb
            enc[m] = enc[m] - LR * gE
            steps += 1
    return enc, W, bias


class _Model(nn.Module):
    def __init__(self, enc, W, bias):
        super().__init__()
        self.encoders = nn.ModuleDict({m: nn.Linear(IN[m], D, bias=False) for m in MODS})
        self.fusion = SharedHead(dict.fromkeys(MODS, D), C)
        self.double()
        with torch.no_grad():
            for m in MODS:
                self.encoders[m].weight.copy_(enc[m])
            self.fusion.shared.weight.copy_(W)
            self.fusion.shared.bias.copy_(bias)

    def forward(self, x):
        f = {m: self.encoders[m](x[m]) for m in MODS}
        return ModelOutput(logits=self.fusion(f), modality_logits={}, features=f)


def _run(enc, W, bias, batches, *, as_released=False):
    model = _Model(enc, W, bias)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    method = MLA(model.fusion, as_released=as_released)
    tools = StepTools(forward=lambda b: model(b["inputs"]), loss=None,  # type: ignore[arg-type]
                      backward=lambda total, terms: total.backward(), guard=lambda total: None,
                      optimizer_step=lambda skip: opt.step(), zero_grad=lambda: opt.zero_grad(set_to_none=True))
    method.begin_epoch(0, train_size=4 * B)
    for x, y in batches:
        method.train_step({"inputs": x, "labels": y}, tools, epoch=0)
    return model, method


def test_two_batches_of_alternating_steps_match_the_equations():
    enc, W, bias, batches = _setup()
    model, method = _run(enc, W, bias, batches)
    e_enc, e_W, e_b = _hand(enc, W, bias, batches)
    torch.testing.assert_close(model.fusion.shared.weight.detach(), e_W, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(model.fusion.shared.bias.detach(), e_b, rtol=1e-6, atol=1e-12)
    for m in MODS:
        torch.testing.assert_close(model.encoders[m].weight.detach(), e_enc[m], rtol=1e-6, atol=1e-12)
    assert method.count == 6


def test_the_oracle_can_fail_added_or_missing_projection_differs():
    enc, W, bias, batches = _setup()
    model, _ = _run(enc, W, bias, batches)
    got = model.fusion.shared.weight.detach()
    for variant in (_hand(enc, W, bias, batches, add=True)[1], _hand(enc, W, bias, batches, project=False)[1]):
        assert (got - variant).abs().max() > 1e-3
    released, _ = _run(enc, W, bias, batches, as_released=True)  # the released code: no projection
    torch.testing.assert_close(released.fusion.shared.weight.detach(), _hand(enc, W, bias, batches, project=False)[1],
                               rtol=1e-6, atol=1e-12)


def _hand_fusion(logits):
    """Per sample: e_m = -sum_c p log p; w_m = exp(max_n e_n - e_m) / sum_k exp(max_n e_n - e_k)."""
    out = torch.zeros_like(logits[MODS[0]])
    for i in range(out.shape[0]):
        ents = []
        for m in MODS:
            p = [math.exp(v) for v in logits[m][i].tolist()]
            z = sum(p)
            p = [q / z for q in p]
            ents.append(-sum(q * math.log(q) for q in p))
        top = max(ents)
        ws = [math.exp(top - e) for e in ents]
        ws = [w / sum(ws) for w in ws]
        for w, m in zip(ws, MODS):
            out[i] += w * logits[m][i]
    return out


def test_eval_prediction_is_the_per_sample_entropy_weighted_sum():
    enc, W, bias, batches = _setup(1)
    model = _Model(enc, W, bias).eval()
    x = batches[0][0]
    with torch.no_grad():
        out = model(x)
        per = {m: x[m] @ enc[m].t() @ W.t() + bias for m in MODS}
    torch.testing.assert_close(out.logits, _hand_fusion(per), rtol=1e-6, atol=1e-12)
    # the oracle can fail: the released weights (softmax over the batch, one weight per modality) differ
    ent = {m: -(torch.softmax(per[m], 0) * torch.log_softmax(per[m], 0)).sum() for m in MODS}
    top = max(ent.values())
    ws = {m: torch.exp(top - ent[m]) for m in MODS}
    released = sum(ws[m] / sum(ws.values()) * per[m] for m in MODS)
    assert (out.logits - released).abs().max() > 1e-3
