"""MASAM: multimodal adaptive sharpness-aware minimisation.

"MASAM: Multimodal Adaptive Sharpness-Aware Minimization for Heterogeneous Data
Fusion", ICLR 2026 (released code: Orange2107/MASAM-Multimodal-Adaptive-SAM,
``models/masam.py``, ``models/sam_decomp_closure.py``). One step, for encoders
``u`` with parameters ``theta_u``, the fused loss ``L_mm`` and each modality's
head loss ``L_u`` (CE of a linear head on encoder u's features):

1. first pass at ``theta``: ``g_mm^u = dL_mm/dtheta_u`` and ``g_u = dL_u/dtheta_u``
   for every encoder, and the gradient of ``L = L_mm + sum_u L_u`` on every other
   parameter (fusion and unimodal heads);
2. dominance score per modality ``s_u = w * d_u + (1 - w) * cos(g_u, g_mm^u)``
   with the loss decrease ``d_u = max(0, l_u(t-1) - EMA_u(t))``,
   ``EMA_u(t) = beta * EMA_u(t-1) + (1 - beta) * l_u(t)`` (``EMA_u(0) = l_u(0)``,
   ``d_u(0) = 0``); the dominant modality is ``m = argmax_u s_u``;
3. perturbation of encoder m only: the direction is ``g_m`` projected onto
   ``g_mm^m``, ``(g_m . g_mm^m / ||g_mm^m||^2) g_mm^m``, or ``g_mm^m`` itself when the
   two conflict (``g_m . g_mm^m < 0``); ``e = rho * c * dir / ||dir||`` with the
   cosine factor ``c = cos(g_m, g_mm^m)`` when it is positive, 1 otherwise;
4. second pass at ``theta_m + e``: the gradient of ``L`` on every encoder;
5. the weights go back to ``theta``; encoders step with the second-pass
   gradients, every other parameter with the first-pass ones.

Cosines, projections and norms here are over each encoder's **whole** gradient
(one vector per encoder). ``as_released=True`` reproduces the released code:
projection per parameter tensor, one cosine factor (the last tensor's) for the
whole encoder (``sam_decomp_closure.py:147, 161``), and the score's cosine the
mean of per-tensor cosines (``sam_decomp_closure.py:289-301``). The released path
stores gradients for two named modalities (``sam_decomp_closure.py:66-75``); here
any number N >= 2 of encoders is handled the same way.

The second forward pass needs the batch again: the method owns the step
(``train_step`` through the trainer's ``StepTools``); in a plain loop,
``backward(total, terms, recompute=fn)`` with ``fn()`` the forward pass and
:meth:`loss` at the current weights. BatchNorm running statistics stay frozen
during the second pass, as the released ``disable_running_stats``.
Cost: two forward passes and three backward passes (the released code: N + 2
backward passes in the first pass). The dominant modality is chosen on the device
(a mask, no host synchronisation). Not for DDP: each rank would perturb along its
own gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, head_loss_terms, parameter_groups
from .registry import Option, Space, register

#: Where the authors' defaults come from (Orange2107/MASAM-Multimodal-Adaptive-SAM at 713f931).
_CFG = "Orange2107/MASAM-Multimodal-Adaptive-SAM configs/masam_cremad.yaml"

#: Added to a norm before dividing by it (the released code's ``perturb_eps``).
EPS = 1e-12


def _zeros_like_missing(grads: list[Tensor | None], params) -> list[Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def global_cosine(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """``cos(a, b)`` of the concatenated tensors (0 when either is zero)."""
    dot = sum((torch.vdot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b)), torch.zeros((), dtype=a[0].dtype,
                                                                                              device=a[0].device))
    na = torch.sqrt(sum((x.pow(2).sum() for x in a), torch.zeros_like(dot)))
    nb = torch.sqrt(sum((y.pow(2).sum() for y in b), torch.zeros_like(dot)))
    denom = na * nb
    return torch.where(denom > 0, dot / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(dot))


def mean_tensor_cosine(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Mean over tensors of the per-tensor cosine (the released score's similarity)."""
    return torch.stack([torch.nn.functional.cosine_similarity(x.reshape(1, -1), y.reshape(1, -1))[0]
                        for x, y in zip(a, b)]).mean()


def perturbation(g_uni: list[Tensor], g_mm: list[Tensor], rho: float, *, per_tensor: bool = False
                 ) -> tuple[list[Tensor], Tensor]:
    """MASAM's perturbation ``e`` of one encoder and its cosine factor's cosine.

    Global (default): ``dir = g_mm`` if ``g_uni . g_mm < 0`` else the projection of
    ``g_uni`` onto ``g_mm``; ``e = rho * c * dir / (||dir|| + EPS)`` with
    ``c = cos(g_uni, g_mm)`` if positive, else 1. ``per_tensor`` (released): the
    projection per tensor, ``c`` the last tensor's cosine (a tensor whose ``g_mm`` is
    zero projects to zero instead of the released 0/0)."""
    if per_tensor:
        dirs, cos_t = [], []
        for u, m in zip(g_uni, g_mm):
            dot = torch.vdot(u.reshape(-1), m.reshape(-1))
            mm = m.pow(2).sum()
            proj = torch.where(mm > 0, dot / torch.where(mm > 0, mm, torch.ones_like(mm)), torch.zeros_like(mm)) * m
            dirs.append(torch.where(dot < 0, m, proj))
            cos_t.append(torch.nn.functional.cosine_similarity(u.reshape(1, -1), m.reshape(1, -1))[0])
        cos = cos_t[-1]
    else:
        dot = sum((torch.vdot(u.reshape(-1), m.reshape(-1)) for u, m in zip(g_uni, g_mm)),
                  torch.zeros((), dtype=g_mm[0].dtype, device=g_mm[0].device))
        mm = sum((m.pow(2).sum() for m in g_mm), torch.zeros_like(dot))
        coef = torch.where(mm > 0, dot / torch.where(mm > 0, mm, torch.ones_like(mm)), torch.zeros_like(mm))
        dirs = [torch.where(dot < 0, m, coef * m) for m in g_mm]
        cos = global_cosine(g_uni, g_mm)
    norm = torch.sqrt(sum((d.pow(2).sum() for d in dirs), torch.zeros((), dtype=dirs[0].dtype,
                                                                       device=dirs[0].device)))
    factor = torch.where(cos > 0, cos, torch.ones_like(cos))
    scale = rho * factor / (norm + EPS)
    return [d * scale for d in dirs], cos


def loss_decrease(ema: Tensor | None, last: Tensor | None, loss: Tensor, momentum: float
                  ) -> tuple[Tensor, Tensor]:
    """``(EMA(t), d(t))``: ``EMA(t) = beta EMA(t-1) + (1 - beta) l(t)``, ``d = max(0, l(t-1) - EMA(t))``;
    the first step gives ``(l(0), 0)``."""
    if ema is None or last is None:
        return loss.clone(), torch.zeros_like(loss)
    new = momentum * ema + (1 - momentum) * loss
    return new, (last - new).clamp_min(0.0)


@contextlib.contextmanager
def frozen_running_stats(modules: Iterable[nn.Module]):
    """BatchNorm layers inside ``modules`` keep their running statistics and counters (the
    released second pass sets their momentum to 0, ``models/util.py`` ``disable_running_stats``)."""
    saved = []
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                count = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
                saved.append((m, m.momentum, count))
                m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(count)


@register
class MASAM(BalancingMethod):
    """MASAM: sharpness-aware steps on the dominant encoder, perturbed along the fused gradient.

    ``encoders``: ``{modality: nn.Module or parameters}`` (two or more). Keyword-only:
    ``rho`` (perturbation radius), ``score_weight`` (weight of the loss decrease in the
    dominance score), ``momentum`` (of the unimodal losses' EMA), ``as_released``
    (per-tensor projection, the last tensor's cosine factor); ``modules``: modules
    whose BatchNorm statistics the second pass must leave alone (the encoders' are
    always included, when they are modules).
    """

    name = "masam"
    paper = ("'MASAM: Multimodal Adaptive Sharpness-Aware Minimization for Heterogeneous Data Fusion', "
             "ICLR 2026")
    options = (
        Option("rho", float, 0.3, "radius of the perturbation of the dominant encoder", low=0.0,
               source=f"{_CFG}:9 (rho)", space=Space.log_uniform(0.01, 1.0), legacy_key="masam_rho"),
        Option("score_weight", float, 0.8, "weight of the loss decrease (vs. the gradient cosine) in the score",
               low=0.0, high=1.0, source=f"{_CFG}:10 (score_weight)", space=Space.uniform(0.0, 1.0),
               legacy_key="masam_score_weight"),
        Option("momentum", float, 0.91, "momentum of the unimodal losses' moving average", low=0.0, high=1.0,
               high_open=True, source=f"{_CFG}:11 (momentum)", space=Space.uniform(0.5, 0.99),
               legacy_key="masam_momentum"),
        Option("as_released", bool, False, "per-tensor projection and one tensor's cosine factor, as released",
               source="Orange2107/MASAM-Multimodal-Adaptive-SAM models/sam_decomp_closure.py:147,161", legacy_key="masam_as_released"),
    )
    needs_heads = True
    min_modalities = 2
    owns_backward = True
    #: Two passes per step, the second at perturbed weights (``train_step``, or ``backward(recompute=...)``).
    owns_step = True
    tie_rank = 12.0
    authors_schedule = {"optimizer": "adamw", "lr": 1e-4, "epochs": 200, "batch_size": 16, "weight_decay": 0.0,
                        "source": "Orange2107/MASAM-Multimodal-Adaptive-SAM configs/masam_cremad.yaml:5-6, "
                                  "models/masam.py:702-706, main.py:276 (max_epochs)"}
    ddp = "refused"
    ddp_reason = ("each rank would choose its dominant modality and perturb along its own gradients, "
                  "so the replicas would drift apart")

    @classmethod
    def build(cls, ctx, **options) -> MASAM:
        if ctx.encoders is None:
            raise ValueError("method masam needs the model's encoders (ctx.encoders)")
        extra = [m for m in (*(ctx.heads or {}).values(), ctx.fusion) if m is not None]
        return cls(dict(ctx.encoders), modules=extra, **cls.resolve_options(options))

    def __init__(self, encoders, *, rho: float = 0.3, score_weight: float = 0.8, momentum: float = 0.91,
                 as_released: bool = False, modules: Iterable[nn.Module] = ()) -> None:
        if isinstance(encoders, nn.ModuleDict):
            encoders = dict(encoders.items())
        self.bn_modules = [e for e in encoders.values() if isinstance(e, nn.Module)] if isinstance(
            encoders, Mapping) else []
        self.bn_modules += list(modules)
        self._pending: Callable[[], tuple[Tensor, Mapping[str, Tensor]]] | None = None
        self.params = parameter_groups(encoders)
        self.modalities = tuple(self.params)
        self.rho = check_number("rho", rho, lo=0.0)
        self.score_weight = check_number("score_weight", score_weight, lo=0.0, hi=1.0)
        self.momentum = check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        if not isinstance(as_released, bool):
            raise ValueError(f"as_released must be true or false, got {as_released!r}")
        self.as_released = as_released
        self.ema: dict[str, Tensor] = {}
        self.last: dict[str, Tensor] = {}
        self.scores: dict[str, Tensor] = {}
        self.cos: dict[str, Tensor] = {}
        self.dominant: Tensor | None = None

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``L_mm + sum_u L_u`` and the terms ``{"fused": L_mm, u: L_u}``."""
        terms = head_loss_terms("MASAM", self.modalities, logits, labels, head_logits, sample_keep)
        return sum(terms.values()), terms

    def select(self, losses: Mapping[str, Tensor], cos: Mapping[str, Tensor]) -> Tensor:
        """Update the loss EMAs with this step's unimodal losses; the scores; the dominant index (0-d)."""
        for n in self.modalities:
            loss = losses[n].detach().float()
            self.ema[n], decay = loss_decrease(self.ema.get(n), self.last.get(n), loss, self.momentum)
            self.last[n] = loss
            self.scores[n] = self.score_weight * decay + (1 - self.score_weight) * cos[n].float().to(decay.device)
        return torch.stack([self.scores[n] for n in self.modalities]).argmax()

    def backward(self, total: Tensor, terms: Mapping[str, Tensor], *, scaler=None,
                 recompute: Callable[[], tuple[Tensor, Mapping[str, Tensor]]] | None = None) -> None:
        """Both passes; leaves ``.grad`` as step 5 of the module docstring says, weights unchanged."""
        recompute = recompute or self._pending
        self._pending = None
        if recompute is None:
            raise ValueError("MASAM.backward needs recompute(): the forward pass and loss at the current weights "
                             "(it evaluates the perturbed point)")
        if FUSED not in terms or any(n not in terms for n in self.modalities):
            raise ValueError(f"MASAM.backward needs terms for 'fused' and {list(self.modalities)}")
        l_mm = terms[FUSED]
        rest = [v for k, v in terms.items() if k != FUSED]
        l_rest = sum(rest[1:], rest[0])
        if scaler is not None:
            l_mm, l_rest = scaler.scale(l_mm), scaler.scale(l_rest)
        enc = [p for n in self.modalities for p in self.params[n]]
        before = [p.grad for p in enc]
        for p in enc:
            p.grad = None
        l_mm.backward(retain_graph=True)  # heads: fused head's gradient; encoders: g_mm
        g_mm = _zeros_like_missing([p.grad for p in enc], enc)
        for p in enc:
            p.grad = None
        l_rest.backward()  # each L_u reaches encoder u and head u only: g_u
        g_u = _zeros_like_missing([p.grad for p in enc], enc)
        cos, pert, i = {}, {}, 0
        for n in self.modalities:
            k = len(self.params[n])
            gm, gu = g_mm[i:i + k], g_u[i:i + k]
            pert[n], c = perturbation(gu, gm, self.rho, per_tensor=self.as_released)
            cos[n] = mean_tensor_cosine(gu, gm) if self.as_released else c
            i += k
        self.cos = cos
        self.dominant = self.select({n: terms[n] for n in self.modalities}, cos)
        saved = [p.detach().clone() for p in enc]
        with torch.no_grad():
            for j, n in enumerate(self.modalities):
                on = (self.dominant == j).to(self.params[n][0].dtype)
                targets: list[Tensor] = list(self.params[n])
                torch._foreach_add_(targets, [e * on for e in pert[n]])
        try:
            with frozen_running_stats(self.bn_modules):
                total2, _ = recompute()
            if scaler is not None:
                total2 = scaler.scale(total2)
            grads2 = torch.autograd.grad(total2, enc, allow_unused=True)
        finally:
            with torch.no_grad():
                torch._foreach_copy_(list[Tensor](enc), saved)
        for p, g, old in zip(enc, grads2, before):
            g = torch.zeros_like(p) if g is None else g
            p.grad = g if old is None else g.add_(old)

    def train_step(self, batch, tools, *, epoch: int):
        """The whole step through the loop's ``StepTools``: forward, loss, both passes, guard, step."""
        tools.zero_grad()
        out = tools.forward(batch)
        total, terms = tools.loss(out, batch["labels"])
        self._pending = lambda: tools.loss(tools.forward(batch), batch["labels"])
        tools.backward(total, terms)  # the loop's backward calls self.backward (scaled under AMP)
        skip = tools.guard(total)
        tools.optimizer_step(skip)
        return out, total, terms, skip

    def state_dict(self) -> dict:
        return {"ema": {n: v.detach().cpu() for n, v in self.ema.items()},
                "last": {n: v.detach().cpu() for n, v in self.last.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = set(state) - {"ema", "last"}
        if unknown:
            raise ValueError(f"MASAM state has unknown keys {sorted(unknown)}")
        device = self.params[self.modalities[0]][0].device
        self.ema = {n: torch.as_tensor(v).to(device) for n, v in (state.get("ema") or {}).items()}
        self.last = {n: torch.as_tensor(v).to(device) for n, v in (state.get("last") or {}).items()}

    def trace_row(self) -> dict[str, Tensor]:
        """Per modality: ``masam_score/<m>``, ``masam_cos/<m>``, ``masam_dominant/<m>`` (1 for the perturbed one)."""
        row: dict[str, Tensor] = {f"masam_score/{n}": v.detach() for n, v in self.scores.items()}
        row.update({f"masam_cos/{n}": v.detach() for n, v in self.cos.items()})
        if self.dominant is not None:
            row.update({f"masam_dominant/{n}": (self.dominant == j).float() for j, n in enumerate(self.modalities)})
        return row

    def __repr__(self) -> str:
        return (f"MASAM(modalities={list(self.modalities)}, rho={self.rho}, score_weight={self.score_weight}, "
                f"momentum={self.momentum}, as_released={self.as_released})")
