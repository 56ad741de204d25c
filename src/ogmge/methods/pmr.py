"""PMR: Prototypical Modal Rebalance.

Fan, Xu, Wang, Zhang, Ma, "PMR: Prototypical Modal Rebalance for Multimodal
Learning", CVPR 2023. Each modality u keeps one prototype per class, ``p_{u,c}``:
the mean encoder feature of class c (the paper's prototype equation), recomputed
at the start of every epoch from a seeded subset of the training split with the
encoders in eval mode and updated as an exponential moving average
``p <- (1 - m) p_new + m p_old``. The prototype classifier scores a sample by
``-||f_u - p_{u,c}||`` (Euclidean distance) and gives the prototypical
cross-entropy ``PCE_u = CE(-d_u, y)``. The batch's prototype confidence
``s_u = sum_i softmax(-d_u)_{i, y_i}`` gives the imbalance ratio
``rho = s_a / s_v``; the modality it marks as slower gets ``alpha * PCE_u``::

    loss = CE(fused) + alpha * sum_{u weak} PCE_u      (epochs start..end, inclusive)

Choices, each against the authors' ``main_Prototype_grad.py`` (docs/methods.md):

- the weight is the constant ``alpha`` chosen by the sign of ``rho - 1``, as the
  released code's ``beta``/``lam`` (l.169-178); ``rho == 1``: no term;
- N > 2 (the released code is two-modality): every modality whose ``s_u`` is below
  the mean of all ``s_w`` is weak; for N = 2 this is exactly ``rho < 1``;
- a class absent from the subset keeps its previous prototype (the released code
  divides by zero there, l.432); absent at the first computation: the subset's
  overall mean feature;
- the paper's prototype entropy regulariser is not in the released code and not
  here (docs/methods.md says why).

Pure tensor functions: :func:`class_prototypes`, :func:`prototype_logits`,
:func:`weak_modalities`, :func:`pmr_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy
from .registry import Option, Space, register

_SRC = "fanyunfeng-bit/Modal-Imbalance-PMR main_Prototype_grad.py"


def class_prototypes(features: Tensor, labels: Tensor, num_classes: int,
                     previous: Tensor | None = None) -> Tensor:
    """Per-class mean of ``features`` (N, D) -> (C, D); a class absent from ``labels``
    keeps its row of ``previous`` (or the overall mean when there is none)."""
    f = features.detach()
    onehot = F.one_hot(labels, num_classes).to(f.dtype)  # (N, C)
    counts = onehot.sum(0)
    sums = onehot.t() @ f
    means = sums / counts.clamp_min(1).unsqueeze(1)
    fallback = previous.to(f) if previous is not None else f.mean(0, keepdim=True).expand_as(means)
    return torch.where(counts.unsqueeze(1) > 0, means, fallback)


def prototype_logits(features: Tensor, prototypes: Tensor) -> Tensor:
    """``-||f_i - p_c||`` (B, C): the prototype classifier's logits (with graph through ``features``)."""
    return -torch.cdist(features, prototypes.to(features))


def confidence_scores(proto_logits: Mapping[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    """``s_u = sum_i softmax(-d_u)_{i, y_i}`` per modality (detached 0-d tensors)."""
    return {u: lg.detach().softmax(-1).gather(1, labels[:, None]).sum() for u, lg in proto_logits.items()}


def weak_modalities(scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{u: 0/1}``: 1 where ``s_u`` is below the mean of the scores (N = 2: ``rho < 1``)."""
    mean = torch.stack(list(scores.values())).mean()
    return {u: (s < mean).to(s.dtype) for u, s in scores.items()}


def pmr_loss(logits: Tensor, labels: Tensor, proto_logits: Mapping[str, Tensor], alpha: float,
             sample_keep: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """``(total, terms, weak)``: ``CE(fused) + alpha * sum_u weak_u * PCE_u``; terms
    ``{"fused": CE, "proto/<u>": PCE_u}``."""
    fused = cross_entropy(logits, labels, sample_keep)
    pce = {u: cross_entropy(lg, labels) for u, lg in proto_logits.items()}
    weak = weak_modalities(confidence_scores(proto_logits, labels))
    total = fused
    for u in proto_logits:
        total = total + alpha * weak[u].to(pce[u].dtype) * pce[u]
    terms = {FUSED: fused, **{f"proto/{u}": v for u, v in pce.items()}}
    return total, terms, weak


@register
class PMR(BalancingMethod):
    """PMR: the slower modality (by prototype confidence) gets a prototypical cross-entropy term.

    Fan et al., CVPR 2023; see the module docstring.

    ``modalities``: two or more names; ``num_classes``. Keyword-only: ``alpha``
    (weight of the weak modality's PCE, > 0; 1.0, main_Prototype_grad.py:49),
    ``momentum`` (EMA of the prototypes, in [0, 1); 0.2, l.39), ``start``/``end``
    (epochs of the term, inclusive; 0 and 100, l.47-48; ``end`` None: no end),
    ``subset`` (fraction of the training split the prototypes are computed on,
    in (0, 1]; 0.1, l.429).
    """

    name = "pmr"
    paper = "Fan et al., 'PMR: Prototypical Modal Rebalance for Multimodal Learning', CVPR 2023"
    options = (
        Option("alpha", float, 1.0, "weight of the slower modality's prototypical cross-entropy", low=0.0,
               low_open=True, source=f"{_SRC}:49", space=Space.log_uniform(0.1, 3.0), legacy_key="pmr_alpha"),
        Option("momentum", float, 0.2, "EMA momentum of the class prototypes", low=0.0, high=1.0, high_open=True,
               source=f"{_SRC}:39", space=Space.uniform(0.0, 0.9), legacy_key="pmr_momentum"),
        Option("start", int, 0, "first epoch of the prototype term", low=0, source=f"{_SRC}:47",
               legacy_key="pmr_start"),
        Option("end", int, 100, "last epoch of the prototype term (inclusive; null: no end)", low=0,
               allow_none=True, source=f"{_SRC}:48", legacy_key="pmr_end"),
        Option("subset", float, 0.1, "fraction of the training split the prototypes are computed on", low=0.0,
               low_open=True, high=1.0, source=f"{_SRC}:429 (the first tenth of the batches)",
               space=Space.uniform(0.05, 1.0), legacy_key="pmr_subset"),
    )
    min_modalities = 2
    tie_rank = 10.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-4, "epochs": 150, "batch_size": 64, "lr_decay": "x0.1 at epoch 70",
                        "weight_decay": 1e-4, "note": "their bash.sh runs use lr 1e-3, 100-130 epochs",
                        "source": f"{_SRC}:36-44, 464-465"}
    needs_features = True
    #: the trainer calls ``start_epoch`` with eval-mode encoder features of a training subset
    wants_epoch_features = True

    def __init__(self, modalities, num_classes: int, *, alpha: float = 1.0, momentum: float = 0.2,
                 start: int = 0, end: int | None = 100, subset: float = 0.1) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.num_classes = int(check_number("num_classes", num_classes, integer=True, lo=2))
        self.alpha = check_number("alpha", alpha, lo=0.0, lo_open=True)
        self.momentum = check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.start = int(check_number("start", start, integer=True, lo=0))
        self.end = None if end is None else int(check_number("end", end, integer=True, lo=self.start))
        self.subset = check_number("subset", subset, lo=0.0, hi=1.0, lo_open=True)
        self.prototypes: dict[str, Tensor] | None = None
        self.epoch = 0
        self.features: Mapping[str, Tensor] | None = None
        self.last: dict[str, Tensor] = {}

    @classmethod
    def build(cls, ctx, **options) -> PMR:
        return cls(ctx.modalities, ctx.num_classes, **cls.resolve_options(options))

    def active(self, epoch: int) -> bool:
        return self.start <= epoch and (self.end is None or epoch <= self.end)

    # the trainer's per-epoch pass ----------------------------------------------------
    def subset_size(self, n: int) -> int:
        return max(1, math.ceil(self.subset * n))

    def start_epoch(self, epoch: int, *, features: Mapping[str, Tensor], labels: Tensor) -> None:
        """New prototypes from eval-mode features ``{u: (n, D)}`` of the training subset."""
        self.epoch = epoch
        new = {}
        for u in self.modalities:
            prev = None if self.prototypes is None else self.prototypes[u]
            fresh = class_prototypes(features[u].double(), labels, self.num_classes,
                                     None if prev is None else prev.double())
            new[u] = fresh if prev is None else (1 - self.momentum) * fresh + self.momentum * prev.double()
        self.prototypes = new

    # one step ------------------------------------------------------------------------
    def transform_features(self, features, *, labels=None, modality_logits=None, baseline=None):
        self.features = features
        return dict(features)

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None, features=None):
        feats = features if features is not None else self.features
        if self.prototypes is None or feats is None:
            raise ValueError("PMR needs its prototypes (start_epoch) and the batch's encoder features")
        proto_logits = {u: prototype_logits(feats[u], self.prototypes[u]) for u in self.modalities}
        if not self.active(self.epoch):
            fused = cross_entropy(logits, labels, sample_keep)
            terms = {FUSED: fused, **{f"proto/{u}": cross_entropy(lg, labels).detach()
                                      for u, lg in proto_logits.items()}}
            self.last = {}
            return fused, terms
        total, terms, weak = pmr_loss(logits, labels, proto_logits, self.alpha, sample_keep)
        self.last = weak
        return total, terms

    # state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "modalities": list(self.modalities),
                "prototypes": None if self.prototypes is None
                else {u: p.detach().cpu().clone() for u, p in self.prototypes.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"PMR state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        self.epoch = int(state["epoch"])
        protos = state.get("prototypes")
        self.prototypes = None if protos is None else {u: torch.as_tensor(protos[u]).double()
                                                       for u in self.modalities}

    def trace_row(self) -> dict:
        return {f"pmr_weak/{u}": v.detach() for u, v in self.last.items()}

    def __repr__(self) -> str:
        return (f"PMR(modalities={list(self.modalities)}, alpha={self.alpha}, momentum={self.momentum}, "
                f"start={self.start}, end={self.end}, subset={self.subset})")
