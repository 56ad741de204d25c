"""MLA: multimodal learning with alternating unimodal adaptation.

Zhang, Yoon, Bansal, Yao, "Multimodal Representation Learning by Alternating
Unimodal Adaptation", CVPR 2024 (arXiv 2311.10707; released code
Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation at ab6c184,
``main.py`` ``train_epoch`` gs branch l.419-476, ``valid`` l.622-651,
``utils/utils.py`` ``GSPlugin`` l.12-41).

**Model.** One linear head ``h(z) = W z + b`` (C x D) is *shared* by every
modality: modality m's logits are ``o_m = h(z_m)`` with ``z_m`` its encoder's
features, or ``z_m = A_m f_m`` (a bias-free linear map to the head's size D) when
feature sizes differ (:class:`SharedHead`, the model's fusion head through
``wrap_fusion``; the paper's encoders all give 512 features).

**Training** (owns the step). One encoder pass per batch; then for each modality
m in turn (the model's order; N >= 2 modalities alternate the same way):
``L_m = CE(h(z_m), y)``, backward, the gradient modification of the shared head,
``optimizer.step()``, ``zero_grad`` -- N optimizer steps per batch, modality m's
logits computed at the head's weights after the previous modality's step. Only
encoder m (and ``A_m``) and the head receive gradients in m's step.

**Gradient modification** (the paper's "gradient modification mechanism": the
orthogonal-projection rule of OWM, in the form of the released
``GSPlugin.before_update``, utils.py:24-41). A
projector P (D x D, P_0 = I) is kept across steps; before every step but the very
first of the run, with ``s = mean_batch(z_m)`` (1 x D, the head's input) and
``alpha = 0.1 ** (b / n_b + 1)`` (b: the batch's index in the epoch, n_b: batches
per epoch; utils.py:26-27)::

    k = P s^T
    P <- P - k k^T / (alpha + s k)          # s k = s P s^T, a scalar
    P <- P / ||P||_F                          # utils.py:38-40
    grad_W <- grad_W P^T                       # replaced, utils.py:41

so the head moves only in directions (approximately) orthogonal to the feature
subspace the previous modalities' steps used. The bias's gradient is unchanged.

**Prediction** (the paper's test-time uncertainty-based fusion). Per sample
and modality the entropy of the class distribution ``e_m = -sum_c p_mc log p_mc``
with ``p_m = softmax(o_m)`` over the classes; weights
``w_m = exp(max_n e_n - e_m) / sum_k exp(max_n e_n - e_k)`` (= softmax over the
modalities of ``-e``); prediction ``sum_m w_m o_m``. It is the model's fused output
(:class:`SharedHead.forward`), so evaluation, ``predict`` and checkpoints use it.
``prediction: blend`` instead pools that output and the per-modality outputs
``o_m`` with weights fitted on validation (the ``stacked`` rule, cross-fitted; the
model's per-modality heads are then views of the shared head, ``wrap_heads``).

**Where the released code differs, and what we follow:**

- The projection never runs as released: ``GSPlugin`` tests the parameter name
  ``"module.weight"`` (utils.py:32) but is handed the head ``fc_out`` itself, whose
  weight is named ``"weight"``, so released MLA is alternating unimodal training
  with a shared head. We run the paper's projection; ``as_released=True`` turns it
  off (and the projector is then never updated, as released).
- BalanceBenchmark (``balancemm/trainer/MLA_trainer.py``, ``GSPlugin.before_update``)
  fixes the name but *adds* ``grad P^T`` to the gradient (``w.grad.add_``); the
  released code and the paper replace it. We replace.
- The released denominator ``alpha + torch.mm(k, r)`` (utils.py:36) is a D x D
  matrix (k is D x 1, r is 1 x D), so the division is elementwise; the recursive
  least-squares rule of the paper (and of OWM) divides by the scalar
  ``alpha + s P s^T``. We use the scalar (BalanceBenchmark copies the matrix form).
- The released test-time weights apply the softmax over the *batch* dimension and
  sum the entropy over the whole batch (main.py:65-70), so each modality gets one
  weight per batch that depends on the batch's composition and size. The paper's
  weights are per sample; we follow the paper. Without ``--dynamic`` the released
  prediction is fixed: ``0.55 o_a + 0.45 o_v`` (main.py:651, ``main(av_alpha=0.55)``
  at main.py:968, ``--av_alpha`` is ignored) and 0.35/0.25/0.4 for three modalities
  (main.py:56-58, 649); not offered.
- The projector is never reset (one ``GSPlugin`` per run, main.py:819) and its
  step counter counts modality steps over the whole run (main.py:442, 454, 466),
  so only the run's very first step goes unprojected; we do the same.
- The released run test-selects its checkpoint (main.py:898-900); ours select on
  validation like every method.

Choices where both are silent: the head's size D and the maps ``A_m`` when
feature sizes differ (``dim``: default the largest feature size; only modalities
of another size get an ``A_m``); ``n_b = ceil(train_size / B)`` with B the epoch's
first batch size; a probe estimator's loss (``estimator: probe``) is added to the
first modality's step. The user's ``fusion`` is replaced by the shared head (only
its ``in_dims`` and ``num_classes`` are read). Not for DDP: each rank's projector
would follow its own features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ogmge.validation import check_positive_int

from .base import FUSED, BalancingMethod, BranchView, branch_views, check_modalities, cross_entropy
from .registry import Option, register

_REPO = "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation"


# ------------------------------------------------------------------------------- the math
def entropy_weights(logits: Tensor) -> Tensor:
    """The paper's per-sample fusion weights: ``logits`` (M, B, C) -> ``w`` (M, B), with
    ``w_m = exp(max_n e_n - e_m) / sum_k exp(max_n e_n - e_k)``, ``e_m`` the entropy of
    ``softmax(o_m)`` over the classes."""
    logp = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)  # (M, B)
    shifted = ent.max(dim=0, keepdim=True).values - ent
    w = shifted.exp()
    return w / w.sum(dim=0, keepdim=True)


def entropy_fusion(logits: Mapping[str, Tensor], order=None) -> Tensor:
    """``sum_m w_m o_m`` with :func:`entropy_weights` over ``{m: (B, C)}`` (in ``order``)."""
    names = tuple(order or logits)
    stacked = torch.stack([logits[m] for m in names])
    w = entropy_weights(stacked).to(stacked.dtype)
    return (w.unsqueeze(-1) * stacked).sum(0)


def released_alpha(batch_index: int, batches: int) -> float:
    """The regulariser of the projector update, ``0.1 ** (b / n_b + 1)`` (utils.py:26-27)."""
    return 0.1 ** (batch_index / batches + 1)


def projector_update(P: Tensor, s: Tensor, alpha: float) -> Tensor:
    """The new projector from ``P`` (D, D) and the head's mean input ``s`` (D,):
    ``P - k k^T / (alpha + s.k)`` with ``k = P s``, then divided by its Frobenius norm."""
    s = s.reshape(-1, 1).to(P.dtype)
    k = P @ s
    new = P - (k @ k.t()) / (alpha + (s.t() @ k))
    return new / torch.linalg.matrix_norm(new, ord="fro")


def project_grad_(weight: nn.Parameter | Tensor, P: Tensor) -> None:
    """Replace ``weight.grad`` (C, D) by ``grad P^T``, in place."""
    if weight.grad is not None:
        weight.grad.copy_(weight.grad @ P.t().to(weight.grad.dtype))


# ------------------------------------------------------------------------------- the model part
class SharedHead(nn.Module):
    """MLA's head: one linear layer shared by every modality (``A_m`` maps a modality whose
    feature size differs from ``dim``); ``forward`` is the paper's entropy-weighted fusion.

    ``in_dims`` ``{m: D_m}``, ``num_classes``; ``dim``: the shared head's input size (None:
    the largest ``D_m``)."""

    default_estimator = "linear"
    #: ``linear_split`` gives each modality's own logits ``h(z_m)`` (the per-modality estimates).
    supports_linear_split = True

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, dim: int | None = None) -> None:
        super().__init__()
        self.in_dims = {m: int(d) for m, d in in_dims.items()}
        self.modalities = check_modalities("in_dims", list(self.in_dims))
        self.num_classes = int(num_classes)
        self.dim = max(self.in_dims.values()) if dim is None else check_positive_int("dim", dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, self.dim, bias=False)
                                   for m, d in self.in_dims.items() if d != self.dim})
        self.shared = nn.Linear(self.dim, self.num_classes)

    def head_input(self, features: Mapping[str, Tensor], m: str) -> Tensor:
        """``z_m``: modality m's features, mapped to ``dim`` when their size differs."""
        x = features[m]
        if not torch.is_autocast_enabled():
            x = x.to(self.shared.weight.dtype)
        return self.proj[m](x) if m in self.proj else x

    def modality_logits(self, features: Mapping[str, Tensor], m: str) -> Tensor:
        """``h(z_m)`` (B, C)."""
        return self.shared(self.head_input(features, m))

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise KeyError(f"MLA's shared head is missing features for modalities {missing}")
        return {m: self.modality_logits(features, m) for m in self.modalities}

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return entropy_fusion(self.linear_split(features), self.modalities)


class SharedHeadView(BranchView):
    """Modality m's head as a view of a :class:`SharedHead`: ``forward(f_m) = h(z_m)``
    (:class:`~ogmge.methods.base.BranchView`: no parameters of its own)."""

    def __init__(self, head: SharedHead, modality: str) -> None:
        if not isinstance(head, SharedHead):
            raise TypeError(f"SharedHeadView needs a SharedHead, got {type(head).__name__}")
        super().__init__(head, modality)


# ------------------------------------------------------------------------------- the method
@register
class MLA(BalancingMethod):
    """MLA: alternating unimodal steps through one shared head, entropy-weighted prediction.

    ``head``: the model's :class:`SharedHead`. Keyword-only: ``as_released`` (no
    gradient projection, as the released code runs), ``dim`` (the shared head's
    input size; used by ``wrap_fusion``).
    """

    name = "mla"
    paper = ("Zhang, Yoon, Bansal, Yao, 'Multimodal Representation Learning by Alternating Unimodal Adaptation', "
             "CVPR 2024")
    options = (
        Option("as_released", bool, False, "no gradient projection on the shared head (the released code never runs it)",
               source=f"{_REPO} utils/utils.py:32"),
        Option("dim", int, None, "the shared head's input size when feature sizes differ (default: the largest)",
               low=1, allow_none=True, source=f"this project (the authors' encoders all give 512 features, {_REPO} utils/utils.py:20)"),
    )
    #: ``fused``: the paper's entropy-weighted outputs; ``blend``: the stacked pool of that output and
    #: the shared head's per-modality outputs, weights fitted on validation (``ogmge.methods.stacked``).
    predictions = (FUSED, "blend")
    min_modalities = 2
    owns_step = True
    own_step_losses = True  # its per-modality losses come from out.features through its head
    owns_backward = False
    tie_rank = 11.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-3, "epochs": 100, "batch_size": 64, "lr_decay": "x0.1 at epoch 70",
                        "weight_decay": 1e-4, "source": f"{_REPO} main.py:28-34, 749, 760"}
    ddp = "refused"
    ddp_reason = ("the projector follows each rank's own features, so the replicas' head gradients "
                  "and weights would drift apart")

    @classmethod
    def wrap_fusion(cls, fusion: nn.Module, **options) -> nn.Module:
        """The shared head in place of ``fusion`` (only its ``in_dims`` and ``num_classes`` are used)."""
        opts = cls.resolve_options(options)
        if isinstance(fusion, SharedHead):
            return fusion
        spec: Any = fusion
        return SharedHead(dict(spec.in_dims), int(spec.num_classes), opts["dim"])

    @classmethod
    def wrap_heads(cls, heads: nn.ModuleDict, fusion: nn.Module, **options) -> nn.ModuleDict:
        """The per-modality heads as views of the shared head (for the ``blend`` prediction)."""
        if not isinstance(fusion, SharedHead):
            return heads
        return branch_views(heads, fusion, SharedHeadView)

    @classmethod
    def build(cls, ctx, **options) -> MLA:
        opts = cls.resolve_options(options)
        if not isinstance(ctx.fusion, SharedHead):
            raise ValueError("method mla needs the model's fusion head to be its SharedHead (build the model "
                             "through the trainer, or pass fusion=MLA.wrap_fusion(head))")
        return cls(ctx.fusion, as_released=opts["as_released"], dim=opts["dim"])

    def __init__(self, head: SharedHead, *, as_released: bool = False, dim: int | None = None) -> None:
        if not isinstance(head, SharedHead):
            raise TypeError(f"MLA needs a SharedHead, got {type(head).__name__}")
        if not isinstance(as_released, bool):
            raise ValueError(f"as_released must be true or false, got {as_released!r}")
        self.head = head
        self.modalities = head.modalities
        self.as_released = as_released
        self.dim = dim
        self.P: Tensor | None = None
        self.count = 0  # modality steps so far in the run (the released exp_count)
        self.batch_index = 0
        self.batches: int | None = None
        self.train_size: int | None = None
        self._losses: dict[str, Tensor] = {}

    def current_options(self) -> dict:
        return {"as_released": self.as_released, "dim": self.dim}

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None) -> None:
        self.batch_index, self.batches, self.train_size = 0, None, int(train_size)
        return None

    def modify_head_grad_(self, z: Tensor) -> None:
        """The gradient modification for a step whose head input is ``z`` (B, D): update the
        projector and replace the head weight's gradient (skipped on the run's first step)."""
        if self.as_released:
            return
        if self.count > 0:
            weight = self.head.shared.weight
            if self.P is None:
                self.P = torch.eye(self.head.dim, dtype=weight.dtype, device=weight.device)
            alpha = released_alpha(self.batch_index, self.batches or 1)
            self.P = projector_update(self.P, z.detach().to(self.P.dtype).mean(0), alpha)
            project_grad_(weight, self.P)

    def train_step(self, batch, tools, *, epoch: int):
        """One encoder pass, then per modality: CE through the shared head, backward, gradient
        modification, guard, optimizer step."""
        labels = batch["labels"]
        if self.batches is None:
            size = self.train_size or int(labels.shape[0])
            self.batches = max(1, math.ceil(size / int(labels.shape[0])))
        tools.zero_grad()
        out = tools.forward(batch)
        terms: dict[str, Tensor] = {FUSED: cross_entropy(out.logits, labels).detach()}
        skip = None
        for i, m in enumerate(self.modalities):
            z = self.head.head_input(out.features, m)
            loss = cross_entropy(self.head.shared(z), labels)
            total = loss
            if i == 0 and getattr(out, "probe_loss", None) is not None:
                total = loss + out.probe_loss
            tools.backward(total, {m: loss})
            self.modify_head_grad_(z)
            reason = tools.guard(total)
            tools.optimizer_step(reason)
            tools.zero_grad()
            skip = skip or reason
            terms[m] = loss.detach()
            self.count += 1
        self.batch_index += 1
        self._losses = {m: terms[m] for m in self.modalities}
        return out, terms[FUSED], terms, skip

    def state_dict(self) -> dict:
        return {"P": None if self.P is None else self.P.detach().cpu().clone(), "count": self.count}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = set(state) - {"P", "count"}
        if unknown:
            raise ValueError(f"MLA state has unknown keys {sorted(unknown)}")
        P = state.get("P")
        weight = self.head.shared.weight
        self.P = None if P is None else torch.as_tensor(P).to(device=weight.device, dtype=weight.dtype).clone()
        self.count = int(state.get("count", 0))

    def trace_row(self) -> dict:
        """``mla_loss/<m>``: each modality's step loss in the last batch."""
        return {f"mla_loss/{m}": v for m, v in self._losses.items()}

    def __repr__(self) -> str:
        return f"MLA(modalities={list(self.modalities)}, dim={self.head.dim}, as_released={self.as_released})"


__all__ = ["MLA", "SharedHead", "SharedHeadView", "entropy_fusion", "entropy_weights", "project_grad_", "projector_update",
           "released_alpha"]
