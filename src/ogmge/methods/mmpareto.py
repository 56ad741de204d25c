"""MMPareto: boosting multimodal learning with innocent unimodal assistance.

Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal
Assistance", ICML 2024. Each modality u has a dedicated linear head on its
encoder's features (trained with the encoder), giving the unimodal loss
``L_u = CE(head_u(phi_u), y)`` beside the fused loss ``L_mm``. For each encoder
u, over *all* its parameters (BatchNorm and biases included), with ``g_mm`` and
``g_u`` the gradients of ``L_mm`` and ``L_u`` on it (each encoder sees exactly
these two losses, whatever N):

- if ``cos(g_mm, g_u) > 0`` over the encoder's whole gradient: weights
  ``(w_mm, w_u) = (1/2, 1/2)``;
- else the two-vector MGDA min-norm weights
  ``gamma = clip((g_u - g_mm) . g_u / ||g_mm - g_u||^2, 0, 1)`` on ``g_mm`` and
  ``1 - gamma`` on ``g_u``;
- per tensor, the new gradient ``2 (w_mm g_mm + w_u g_u)`` is scaled up to the
  norm of the plain sum ``g_mm + g_u`` when that norm is larger, then multiplied
  by ``scale`` (1.5 in the paper's code); a tensor whose combined gradient has
  norm 0 stays 0.

Every other parameter (the fusion head, the unimodal heads) gets the plain sum
of the gradients of the losses that reach it.

Cost: the authors' code runs four backward passes per step. Here
:meth:`MMPareto.backward` runs two, each through every encoder once:
``L_mm.backward(retain_graph=True)`` (``g_mm`` of every encoder, and the fusion
head's gradient), then ``sum_u L_u`` (``g_u``: each ``L_u`` reaches only encoder
u and its head). The combination runs on the device without host
synchronisation. Gradients present before the call are kept and added back.

In a plain loop (the model returns ``logits`` and ``head_logits``)::

    mp = MMPareto(model.encoders, scale=1.5)
    out = model(inputs)
    total, terms = mp.loss(out.logits, y, head_logits=out.head_logits)
    opt.zero_grad()
    mp.backward(total, terms)     # instead of total.backward()
    opt.step()

Under DDP the gradients of each loss must be averaged over ranks *before* the
combination (the cosines and weights are not linear in them): run the forward
pass inside ``ddp_model.no_sync()`` so neither backward pass all-reduces, and
construct with ``sync_grads=True`` (the default): when ``torch.distributed`` is
initialised, ``g_mm`` and then ``g_u`` are averaged over ranks before they are
combined, so every rank computes the same cosines, weights and gradients. The
other parameters' gradients (heads) must then be averaged by the caller (the
trainer does; :func:`average_gradients_`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, head_loss_terms, parameter_groups
from .registry import Option, Space, register


def average_gradients_(grads: list[Tensor | None], process_group=None) -> None:
    """Average gradients over the ranks in place (no-op without ``torch.distributed``)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size(process_group)
    present = [g for g in grads if g is not None]
    if not present:
        return
    flat = torch.cat([g.reshape(-1) for g in present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=process_group)
    flat /= world
    offset = 0
    for g in present:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _or_zeros(grad: Tensor | None, other: Tensor | None) -> Tensor:
    """``grad``, or zeros shaped like ``other`` when ``grad`` is None (one of them is a tensor)."""
    if grad is not None:
        return grad
    assert other is not None
    return torch.zeros_like(other)


def combine_gradients_(
    g_mm: list[Tensor | None], g_u: list[Tensor | None], *, scale: float = 1.5
) -> tuple[list[Tensor | None], Tensor, Tensor]:
    """MMPareto's combination for one encoder; reuses ``g_u``'s tensors for the result.

    Returns ``(new gradients, cos, w_mm)`` (0-d tensors). ``None`` entries stand
    for zero gradients; a tensor that is None in both stays None."""
    pairs = [(a, b) for a, b in zip(g_mm, g_u) if a is not None or b is not None]
    if not pairs:
        return list(g_u), torch.zeros(()), torch.full((), 0.5)
    ref = next(t for pair in pairs for t in pair if t is not None)
    a_list = [_or_zeros(a, b) for a, b in pairs]
    b_list = [_or_zeros(b, a) for a, b in pairs]
    dots = torch.stack([torch.vdot(a.reshape(-1), b.reshape(-1)) for a, b in zip(a_list, b_list)])
    na = torch.stack(torch._foreach_norm(a_list))
    nb = torch.stack(torch._foreach_norm(b_list))
    norm_sum = torch.stack([torch.linalg.vector_norm(a + b) for a, b in zip(a_list, b_list)])
    dot, aa, bb = dots.sum(), (na * na).sum(), (nb * nb).sum()
    denom = (aa * bb).sqrt()
    cos = torch.where(denom > 0, dot / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(dot))
    diff = aa + bb - 2 * dot  # ||g_mm - g_u||^2
    gamma = torch.where(diff > 0, (bb - dot) / torch.where(diff > 0, diff, torch.ones_like(diff)),
                        torch.zeros_like(diff)).clamp(0.0, 1.0)
    w_mm = torch.where(cos > 0, torch.full_like(gamma, 0.5), gamma)
    w_u = 1 - w_mm
    out = [b.mul_(2 * w_u) if b is not None else b_new for (_, b), b_new in zip(pairs, b_list)]
    for t, a in zip(out, a_list):
        t.add_(a * (2 * w_mm))
    n_new = torch.stack(torch._foreach_norm(out))
    grow = (norm_sum > n_new) & (n_new > 0)
    factor = torch.where(grow, norm_sum / torch.where(n_new > 0, n_new, torch.ones_like(n_new)),
                         torch.ones_like(n_new)) * scale
    torch._foreach_mul_(out, list(factor.to(ref.dtype).unbind()))
    result = iter(out)
    full = [next(result) if (a is not None or b is not None) else None for a, b in zip(g_mm, g_u)]
    return full, cos, w_mm


@register
class MMPareto(BalancingMethod):
    """MMPareto: per encoder, the fused and unimodal gradients combined without conflict (Pareto).

    ``encoders``: ``{modality: nn.Module or iterable of parameters}`` (two or
    more, e.g. ``model.encoders``). Keyword-only: ``scale`` (> 0, the final
    multiplier; 1.5 in the paper's code); ``sync_grads`` (average each loss's
    encoder gradients over ranks before combining, when ``torch.distributed`` is
    initialised); ``process_group`` for that average.
    """

    name = "mmpareto"
    paper = "Wei & Hu, 'MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance', ICML 2024"
    options = (
        Option("scale", float, 1.5, "multiplier of the combined encoder gradients", low=0.0, low_open=True,
               source="GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py:178 (gamma=1.5, multiplied in at :195, :197 and "
                      "likewise for the visual encoder)",
               space=Space.uniform(1.0, 2.0), legacy_key="mmpareto_scale"),
    )
    needs_heads = True
    min_modalities = 2
    owns_backward = True
    tie_rank = 7.0
    authors_schedule = {"optimizer": "sgd", "lr": 2e-3, "epochs": 50, "batch_size": 64, "lr_decay": "x0.1 at epoch 30",
                        "weight_decay": 1e-4, "source": "GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py:28-35, 296"}
    #: Under DDP: the forward must run in ``no_sync()`` and the heads' gradients be averaged by the caller.
    ddp = "syncs"
    distributed_ok = True
    syncs_encoder_grads = True

    @classmethod
    def build(cls, ctx, **options) -> MMPareto:
        if ctx.encoders is None:
            raise ValueError("method mmpareto needs the model's encoders (ctx.encoders)")
        return cls(dict(ctx.encoders), process_group=ctx.process_group, **cls.resolve_options(options))

    def sync_params(self) -> list:
        """The encoders' parameters: their gradients are averaged inside ``backward``."""
        return [p for n in self.modalities for p in self.params[n]]

    def __init__(self, encoders, *, scale: float = 1.5, sync_grads: bool = True, process_group=None) -> None:
        self.params = parameter_groups(encoders)
        self.modalities = tuple(self.params)
        self.scale = check_number("scale", scale, lo=0.0, lo_open=True)
        if not isinstance(sync_grads, bool):
            raise ValueError(f"sync_grads must be true or false, got {sync_grads!r}")
        self.sync_grads = sync_grads
        self.process_group = process_group
        self.cos: dict[str, Tensor] = {}
        self.w_mm: dict[str, Tensor] = {}

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``L_mm + sum_u L_u`` and the terms ``{"fused": L_mm, u: L_u}``."""
        terms = head_loss_terms("MMPareto", self.modalities, logits, labels, head_logits, sample_keep)
        return sum(terms.values()), terms

    def backward(self, total: Tensor, terms: Mapping[str, Tensor], *, scaler=None) -> None:
        """Two backward passes, then the combination on every encoder's gradients.

        ``terms[FUSED]`` is ``L_mm``; every other term (the unimodal losses, and e.g.
        a probe loss on detached features) goes into the second pass."""
        if FUSED not in terms:
            raise ValueError("MMPareto.backward needs terms['fused'] (the fused loss)")
        l_mm = terms[FUSED]
        rest = [v for k, v in terms.items() if k != FUSED]
        if not rest:
            raise ValueError("MMPareto.backward needs at least one term besides terms['fused']")
        l_rest = sum(rest[1:], rest[0])
        if scaler is not None:
            l_mm, l_rest = scaler.scale(l_mm), scaler.scale(l_rest)
        enc = [p for n in self.modalities for p in self.params[n]]
        before = [p.grad for p in enc]
        for p in enc:
            p.grad = None
        l_mm.backward(retain_graph=True)
        g_mm = [p.grad for p in enc]
        for p in enc:
            p.grad = None
        l_rest.backward()
        if self.sync_grads:  # every rank combines the same averaged gradients
            average_gradients_(g_mm, self.process_group)
            average_gradients_([p.grad for p in enc], self.process_group)
        i = 0
        for n in self.modalities:
            ps = self.params[n]
            gm, gu = g_mm[i:i + len(ps)], [p.grad for p in ps]
            new, self.cos[n], self.w_mm[n] = combine_gradients_(gm, gu, scale=self.scale)
            for p, g, old in zip(ps, new, before[i:i + len(ps)]):
                p.grad = g if old is None else (old if g is None else g.add_(old))
            i += len(ps)

    def trace_row(self) -> dict[str, Tensor]:
        """Per encoder: ``mmpareto_cos/<m>`` and ``mmpareto_w_mm/<m>`` (0-d tensors; no host sync)."""
        row = {f"mmpareto_cos/{n}": v.detach() for n, v in self.cos.items()}
        row.update({f"mmpareto_w_mm/{n}": v.detach() for n, v in self.w_mm.items()})
        return row

    def __repr__(self) -> str:
        return f"MMPareto(modalities={list(self.modalities)}, scale={self.scale})"
