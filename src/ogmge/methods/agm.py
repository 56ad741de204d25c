"""AGM: Adaptive Gradient Modulation.

Li, Li, Hu, Lei, Li, Zhou, "Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation", ICCV 2023. The fused output is split into per-modality
contributions by Shapley values over modality-masked evaluations of the fusion
head, ``f(S)`` = the head on the features of the modalities in S (the others
zeroed)::

    m_u = sum_{S ⊆ others} |S|! (N - |S| - 1)! / N! * (f(S ∪ {u}) - f(S)) + f(∅) / N,

so ``sum_u m_u = f(all)`` exactly (for N = 2, ``m_a = ½ [f(a,v) - f(0,v) + f(a,0)]``,
the authors' ``Modality_Audio``). The loss is ``CE(sum_u m_u)`` (the fused
cross-entropy); the gradient flowing through ``m_u`` is multiplied by

    c_u = exp(alpha * min(exp(s̄_o - s̄_u) - exp(s_o - s_u), cap)),

with ``s_u`` the batch mean of ``-log softmax(m_u)_y`` (probabilities floored at
1e-8), ``s_o`` the mean of the other modalities' ``s`` (N = 2: the other's), and
``s̄`` their running means over every step so far (taken before this step's
update). Inside epochs ``start``..``end`` only; outside, ``c_u = 1``. After the
backward pass, when any weight-gradient entry of the fusion head leaves
``[-clip, clip]``, all gradients are clipped to norm ``clip``.

Differences from the authors' code (docs/methods.md): they run the *encoders*
again on zeroed inputs (in eval mode, with gradients); we mask the *features* and
run the encoders once, so the 2^N masked evaluations are fusion-head passes only
(exact Shapley up to 6 modalities). Their code is two-modality.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy
from .registry import Option, Space, register

_SRC = "lihong2303/AGM_ICCV2023"
#: Exact Shapley over 2^N subsets; more modalities are refused.
MAX_MODALITIES = 6


def shapley_contributions(fusion, features: Mapping[str, Tensor], modalities, full: Tensor | None = None
                          ) -> dict[str, Tensor]:
    """``{u: m_u}`` (B, C): exact Shapley values of the head over feature-masked subsets,
    plus ``f(∅)/N`` each, so they sum to ``f(all)`` (``full``, when given, is ``f(all)``)."""
    names = tuple(modalities)
    n = len(names)
    values: dict[frozenset, Tensor] = {}
    for r in range(n + 1):
        for subset in itertools.combinations(names, r):
            key = frozenset(subset)
            if r == n and full is not None:
                values[key] = full
                continue
            masked = {u: (features[u] if u in key else torch.zeros_like(features[u])) for u in names}
            values[key] = fusion(masked)
    out = {}
    for u in names:
        others = [w for w in names if w != u]
        total = values[frozenset()] / n
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for subset in itertools.combinations(others, r):
                s = frozenset(subset)
                total = total + weight * (values[s | {u}] - values[s])
        out[u] = total
    return out


def contribution_scores(contributions: Mapping[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    """``s_u``: batch mean of ``-log softmax(m_u)_y`` with probabilities floored at 1e-8 (detached)."""
    out = {}
    for u, m in contributions.items():
        m = m.detach()
        p = (m.float() if m.dtype in (torch.float16, torch.bfloat16) else m).softmax(-1).gather(1, labels[:, None]).squeeze(1)
        out[u] = -torch.log(p.clamp_min(1e-8)).mean()
    return out


def coefficients(scores: Mapping[str, float], running: Mapping[str, float], alpha: float, cap: float
                 ) -> dict[str, float]:
    """``c_u = exp(alpha * min(exp(s̄_o - s̄_u) - exp(s_o - s_u), cap))``, ``s_o`` the others' mean."""
    out = {}
    for u in scores:
        others = [w for w in scores if w != u]
        s_o = sum(scores[w] for w in others) / len(others)
        r_o = sum(running[w] for w in others) / len(others)
        gap = math.exp(r_o - running[u]) - math.exp(s_o - scores[u])
        out[u] = math.exp(alpha * min(gap, cap))
    return out


def scale_gradient(x: Tensor, c: float) -> Tensor:
    """``x`` in value; its gradient multiplied by ``c`` (the authors' backward hooks)."""
    return c * x + (1.0 - c) * x.detach()


@register
class AGM(BalancingMethod):
    """AGM: gradients through each modality's Shapley contribution scaled by its lag (any fusion).

    Li et al., ICCV 2023; see the module docstring.

    ``modalities`` (2 to 6 names), ``fusion`` (the fusion head: ``fusion(features) ->
    logits``), ``params`` (every trainable parameter, for the clipping). Keyword-only:
    ``alpha`` (1.0), ``start``/``end`` (modulation epochs, inclusive; 0 and 20),
    ``cap`` (10), ``clip`` (1.0).
    """

    name = "agm"
    paper = "Li et al., 'Boosting Multi-modal Model Performance with Adaptive Gradient Modulation', ICCV 2023"
    options = (
        Option("alpha", float, 1.0, "strength of the modulation", low=0.0, low_open=True,
               source=f"{_SRC} utils/config.py:76", space=Space.log_uniform(0.1, 3.0), legacy_key="agm_alpha"),
        Option("start", int, 0, "first modulated epoch", low=0, source=f"{_SRC} utils/config.py:74",
               legacy_key="agm_start"),
        Option("end", int, 20, "last modulated epoch (inclusive; null: no end)", low=0, allow_none=True,
               source=f"{_SRC} utils/config.py:75", space=Space.int_range(5, 80), legacy_key="agm_end"),
        Option("cap", float, 10.0, "upper bound of the exponent's gap", low=0.0, low_open=True,
               source=f"{_SRC} run/CREMAD_main.py:151", legacy_key="agm_cap"),
        Option("clip", float, 1.0, "gradient clipping: trigger on the head's weight gradient and max norm",
               low=0.0, low_open=True, source=f"{_SRC} run/CREMAD_main.py:237-238", legacy_key="agm_clip"),
    )
    min_modalities = 2
    max_modalities = MAX_MODALITIES
    tie_rank = 11.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-4, "epochs": 100, "batch_size": 64,
                        "note": "the README's one command (AV-MNIST); argparse defaults lr 1e-5, 10 epochs, batch 16",
                        "source": f"{_SRC} README.md:42, tasks/CREMAD_task.py:36-37, utils/config.py:69-71"}
    ddp = "refused"
    ddp_reason = ("its running scores are means over each rank's own batches, so the ranks' states (and "
                  "coefficients) would drift apart; all-reducing the scores is not implemented yet")
    needs_features = True

    @classmethod
    def build(cls, ctx, **options) -> AGM:
        if ctx.fusion is None:
            raise ValueError("AGM needs the fusion head (ctx.fusion)")
        params = [p for m in (*(ctx.encoders or {}).values(), ctx.fusion, *(ctx.heads or {}).values())
                  for p in m.parameters()]
        return cls(ctx.modalities, ctx.fusion, params, **cls.resolve_options(options))

    def __init__(self, modalities, fusion: nn.Module, params, *, alpha: float = 1.0, start: int = 0,
                 end: int | None = 20, cap: float = 10.0, clip: float = 1.0) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if len(self.modalities) > MAX_MODALITIES:
            raise ValueError(f"AGM computes exact Shapley contributions over 2^N subsets; it supports at most "
                             f"{MAX_MODALITIES} modalities, got {len(self.modalities)}")
        if not callable(fusion):
            raise TypeError("AGM needs the fusion head (a callable on {modality: features})")
        self.fusion = fusion
        self.params = [p for p in params if p.requires_grad]
        self.alpha = check_number("alpha", alpha, lo=0.0, lo_open=True)
        self.start = int(check_number("start", start, integer=True, lo=0))
        self.end = None if end is None else int(check_number("end", end, integer=True, lo=self.start))
        self.cap = check_number("cap", cap, lo=0.0, lo_open=True)
        self.clip = check_number("clip", clip, lo=0.0, lo_open=True)
        self.epoch = 0
        self.steps = 0
        self.running = {u: 0.0 for u in self.modalities}
        self.last: dict[str, float] = {}

    def active(self, epoch: int) -> bool:
        return self.start <= epoch and (self.end is None or epoch <= self.end)

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None, features=None):
        """``CE(sum_u m_u)`` with the gradient through ``m_u`` scaled by ``c_u``; terms ``{"fused"}``."""
        if features is None:
            raise ValueError("AGM.loss needs features= (the encoders' outputs)")
        contrib = shapley_contributions(self.fusion, features, self.modalities, full=logits)
        scores = {u: float(s) for u, s in contribution_scores(contrib, labels).items()}
        coeffs = coefficients(scores, self.running, self.alpha, self.cap)
        self.steps += 1
        t = self.steps
        self.running = {u: self.running[u] * (t - 1) / t + scores[u] / t for u in self.modalities}
        if not self.active(self.epoch):
            coeffs = {u: 1.0 for u in self.modalities}
        combined = sum((scale_gradient(contrib[u], coeffs[u]) for u in self.modalities[1:]),
                       scale_gradient(contrib[self.modalities[0]], coeffs[self.modalities[0]]))
        total = cross_entropy(combined, labels, sample_keep)
        self.last = {**{f"agm_coeff/{u}": c for u, c in coeffs.items()},
                     **{f"agm_score/{u}": s for u, s in scores.items()}}
        return total, {FUSED: cross_entropy(logits, labels, sample_keep).detach()}

    def after_backward(self, *, modality_logits=None, labels=None, epoch=None, sample_weight=None):
        """The authors' clipping: norm ``clip`` when a fusion weight-gradient entry leaves ``±clip``."""
        head = [p.grad for p in self.fusion.parameters() if p.grad is not None and p.dim() >= 2]
        if head and bool(torch.stack([g.abs().max() for g in head]).max() > self.clip):
            torch.nn.utils.clip_grad_norm_(self.params, max_norm=self.clip)
        return None

    def end_epoch(self, epoch: int, *, train_losses=None, val_losses=None) -> None:
        self.epoch = epoch + 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "steps": self.steps, "running": dict(self.running),
                "modalities": list(self.modalities)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"AGM state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        self.epoch, self.steps = int(state["epoch"]), int(state["steps"])
        self.running = {u: float(state["running"][u]) for u in self.modalities}

    def trace_row(self) -> dict:
        return dict(self.last)

    def __repr__(self) -> str:
        return (f"AGM(modalities={list(self.modalities)}, alpha={self.alpha}, start={self.start}, end={self.end}, "
                f"cap={self.cap}, clip={self.clip})")


__all__ = ["AGM", "coefficients", "contribution_scores", "scale_gradient", "shapley_contributions"]
