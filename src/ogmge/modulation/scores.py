"""Scores, discrepancy ratios and modulation coefficients of OGM-GE.

Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient
Modulation", CVPR 2022: Eq. 8-9 (score and discrepancy ratio) and Eq. 10
(coefficient). Everything here is pure, batched and free of host
synchronisation: inputs and outputs are tensors keyed by modality name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch
from torch import Tensor

from ..validation import check_choice

#: Floor of the denominator of a ratio, so a modality whose partners all
#: score 0 gets a large but finite ratio (never NaN or inf).
RATIO_EPS = 1e-8

#: How the other modalities' scores are combined in Eq. 9 (N > 2).
RatioReduce = Literal["mean", "min", "max"]
RATIO_REDUCTIONS: tuple[RatioReduce, ...] = get_args(RatioReduce)
#: Eq. 10 with its jump at rho = 1 (``paper``) or without (``continuous``).
CoefficientRule = Literal["paper", "continuous"]
COEFFICIENT_RULES: tuple[CoefficientRule, ...] = get_args(CoefficientRule)


def check_logits_and_labels(name: str, logits: Tensor, labels: Tensor) -> None:
    """Raise a ValueError naming the modality when shapes do not fit."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"modality_logits[{name!r}] must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(
            f"modality_logits[{name!r}] must have shape (batch, classes), got {tuple(logits.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match modality_logits[{name!r}] "
            f"of shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")


def check_label_range(labels: Tensor, num_classes: int) -> None:
    """Labels must lie in ``[0, num_classes)``. On the CPU a ValueError names the first
    value outside; on an accelerator the check is queued on the device (no host sync)
    and fails at the next synchronisation."""
    bad = (labels < 0) | (labels >= num_classes)
    if labels.device.type == "cpu":
        if bool(bad.any()):
            value = int(labels[bad][0])
            raise ValueError(f"labels hold {value}, outside [0, {num_classes}) for logits of {num_classes} classes")
    else:
        torch._assert_async(~bad.any(), f"labels outside [0, {num_classes}) for logits of {num_classes} classes")


def batch_scores(
    modality_logits: Mapping[str, Tensor],
    labels: Tensor,
    *,
    sample_weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """Eq. 8: ``s_u = sum_i softmax(o_u(x_i))[y_i]`` for every modality.

    One batched softmax and gather per modality (no per-sample loop). Logits of
    half precision are promoted to float32. ``sample_weight`` (shape (batch,))
    weights each sample's term, e.g. 0 for samples left out of the loss.

    >>> import torch
    >>> logits = {"audio": torch.tensor([[2.0, 0.0], [0.0, 2.0]]), "visual": torch.zeros(2, 2)}
    >>> scores = batch_scores(logits, torch.tensor([0, 1]))
    >>> {m: round(float(s), 4) for m, s in scores.items()}
    {'audio': 1.7616, 'visual': 1.0}
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    for name, logits in modality_logits.items():
        check_logits_and_labels(name, logits, labels)
    classes = {name: logits.shape[1] for name, logits in modality_logits.items()}
    if len(set(classes.values())) > 1:
        raise ValueError(f"modality_logits disagree on the number of classes: {classes}")
    if classes and labels.numel():
        check_label_range(labels, next(iter(classes.values())))
    scores: dict[str, Tensor] = {}
    for name, logits in modality_logits.items():
        logits = logits.detach()
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        probs = torch.softmax(logits, dim=1)
        idx = labels.to(device=logits.device, dtype=torch.long).unsqueeze(1)
        terms = probs.gather(1, idx).squeeze(1)
        if sample_weight is not None:
            if sample_weight.shape != terms.shape:
                raise ValueError(
                    f"sample_weight must have shape {tuple(terms.shape)}, got {tuple(sample_weight.shape)}"
                )
            terms = terms * sample_weight.to(device=terms.device, dtype=terms.dtype)
        scores[name] = terms.sum()
    return scores


def discrepancy_ratios(
    scores: Mapping[str, Tensor], *, reduce: RatioReduce = "mean", eps: float = RATIO_EPS
) -> dict[str, Tensor]:
    """Eq. 9 generalised to N modalities: ``rho_u = s_u / reduce_{w != u} s_w``.

    With two modalities and any reduction this is the paper's ``s_v / s_a``
    (and ``rho_a = 1 / rho_v``). The denominator is floored at ``eps`` so a
    zero score never yields NaN or inf.

    >>> import torch
    >>> ratios = discrepancy_ratios({"audio": torch.tensor(3.0), "visual": torch.tensor(1.5)})
    >>> {m: float(r) for m, r in ratios.items()}
    {'audio': 2.0, 'visual': 0.5}
    """
    check_choice("reduce", reduce, RATIO_REDUCTIONS)
    names = list(scores)
    if len(names) < 2:
        raise ValueError(f"OGM-GE needs at least two modalities, got {names}")
    stacked = torch.stack([torch.as_tensor(scores[n]) for n in names])
    n = len(names)
    if n == 2:  # the paper's ratio: each modality against the other's score
        others = stacked.flip(0)
    elif reduce == "mean":
        # s_u + mean_{w != u}(s_w - s_u): the differences are exactly 0 for equal
        # scores, so equal scores give rho = 1 exactly ((sum - s_u) / (N - 1) may not).
        diffs = stacked.unsqueeze(0) - stacked.unsqueeze(1)  # [u, w] = s_w - s_u (0 on the diagonal)
        others = stacked + diffs.sum(dim=1) / (n - 1)
    else:
        eye = torch.eye(n, dtype=torch.bool, device=stacked.device)
        fill = float("inf") if reduce == "min" else float("-inf")
        table = stacked.unsqueeze(0).expand(n, n).masked_fill(eye, fill)
        others = table.amin(dim=1) if reduce == "min" else table.amax(dim=1)
    ratios = stacked / others.clamp_min(eps)
    return {name: ratios[i] for i, name in enumerate(names)}


def modulation_coefficients(
    ratios: Mapping[str, Tensor], *, alpha: float, rule: CoefficientRule = "paper"
) -> dict[str, Tensor]:
    """Eq. 10: ``k_u = 1 - tanh(alpha * rho_u)`` if ``rho_u > 1`` else 1.

    ``rule="paper"`` keeps the paper's jump at ``rho = 1`` (k falls from 1 to
    ``1 - tanh(alpha)``); ``rule="continuous"`` uses ``1 - tanh(alpha * (rho_u - 1))``
    for ``rho_u > 1``, which is 1 at ``rho = 1``.

    >>> import torch
    >>> k = modulation_coefficients({"audio": torch.tensor(2.0), "visual": torch.tensor(0.5)}, alpha=0.8)
    >>> {m: round(float(v), 4) for m, v in k.items()}
    {'audio': 0.0783, 'visual': 1.0}
    """
    check_choice("rule", rule, COEFFICIENT_RULES)
    out: dict[str, Tensor] = {}
    for name, rho in ratios.items():
        arg = rho if rule == "paper" else rho - 1
        k = 1 - torch.tanh(alpha * arg)
        out[name] = torch.where(rho > 1, k, torch.ones_like(k))
    return out
