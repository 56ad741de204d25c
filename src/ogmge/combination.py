"""Combining per-head predictions: weighted log-probabilities, weights fitted on held-out data (layer 0).

``ensemble_logits`` is ``sum_m w_m log_softmax(o_m)``; :func:`fit_simplex_weights`
finds ``w`` on the probability simplex minimising the negative log-likelihood of
``softmax(sum_m w_m log_softmax(o_m))`` -- convex in ``w`` (log-sum-exp of an
affine map minus an affine map) -- by projected gradient descent with
backtracking in float64 from equal weights (deterministic). Used by the unimodal
ensemble (Du et al., ICML 2023), the anchored blend and the model's combiner.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based)."""
    n = v.numel()
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    idx = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    cond = u - css / idx > 0
    rho = int(torch.nonzero(cond).max())
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp_min(0)


def ensemble_logits(head_logits: Mapping[str, Tensor], weights: Tensor, modalities) -> Tensor:
    """``sum_u w_u * log_softmax(o_u)`` (B, C)."""
    out = None
    for i, n in enumerate(modalities):
        lg = head_logits[n]
        term = torch.log_softmax(lg.float() if lg.dtype in (torch.float16, torch.bfloat16) else lg, dim=-1)
        term = term * weights[i].to(term.dtype)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("ensemble_logits needs at least one modality")
    return out


def ensemble_nll(log_probs: Tensor, labels: Tensor, w: Tensor) -> Tensor:
    """Mean NLL of ``softmax(sum_u w_u log_probs[u])``; ``log_probs`` (N, M, C)."""
    z = torch.einsum("u,umc->mc", w, log_probs)
    return (torch.logsumexp(z, dim=1) - z.gather(1, labels.view(-1, 1)).squeeze(1)).mean()


def fit_simplex_weights(
    head_logits: Mapping[str, Tensor], labels: Tensor, modalities, *, max_steps: int = 500, tol: float = 1e-10
) -> Tensor:
    """Weights (N,) float64 on the simplex minimising :func:`ensemble_nll` (see the module docstring)."""
    names = list(modalities)
    lp = torch.stack([torch.log_softmax(head_logits[n].detach().double().cpu(), dim=-1) for n in names])
    y = labels.detach().cpu().long()
    n = len(names)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if y.numel() == 0:
        return w
    step = 1.0
    loss = ensemble_nll(lp, y, w)
    for _ in range(max_steps):
        z = torch.einsum("u,umc->mc", w, lp)
        p = torch.softmax(z, dim=1)
        grad = (torch.einsum("mc,umc->u", p, lp) - lp.gather(2, y.view(1, -1, 1).expand(n, -1, 1)).squeeze(2).sum(1)) \
            / y.numel()
        while True:
            cand = project_simplex(w - step * grad)
            d = cand - w
            cand_loss = ensemble_nll(lp, y, cand)
            if cand_loss <= loss + grad.dot(d) + d.dot(d) / (2 * step) or step < 1e-12:
                break
            step /= 2
        moved = float(d.abs().max())
        w, loss = cand, cand_loss
        step *= 2
        if moved < tol:
            break
    return w



__all__ = ["ensemble_logits", "ensemble_nll", "fit_simplex_weights", "project_simplex"]
