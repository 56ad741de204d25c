"""The trainer's side of the balancing methods (docs/methods.md): checks, the initial
model's per-head losses, validation with cross-fitting, and DDP agreement.

**Cross-fitting.** A method that fits something on the validation split
(``fits_on_validation``: G-Blending's weights, the ensemble's ``w``) must not be
scored on the samples it was fitted on. The validation split is cut into two
seeded halves A and B (:func:`halves`):

- G-Blending: its estimate sees the per-head losses of half A only; the
  selection score and the reported validation metrics are half B's;
- unimodal ensemble and anchored fusion: ``w`` fitted on A predicts B and ``w``
  fitted on B predicts A; the metrics are those of these cross-fitted predictions
  over the whole split (accuracy = the two halves' mean, weighted by size). The
  model then keeps ``w`` fitted on the whole split, for the test split and for
  prediction.

Everything else is scored on the whole validation split (``"plain"``).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ogmge.methods import (
    FUSED,
    AnchoredFusion,
    BalancingMethod,
    GBlending,
    MMPareto,
    UnimodalEnsemble,
    average_gradients_,
    cross_entropy,
    ensemble_logits,
)
from ogmge.seeding import component_seed

from .metrics import collect, head_losses, metrics_from_outputs, subset, to_device

CROSS_FIT = "cross-fit"
PLAIN = "plain"


def check_method(method: BalancingMethod, *, distributed: bool, has_val: bool, val_size: int | None = None) -> None:
    """Refuse what a method cannot do, with errors naming the method."""
    if distributed and not method.distributed_ok:
        raise ValueError(
            f"method {method.name!r} is not supported under DDP (its replicas would not stay identical); "
            "train it on one process"
        )
    if isinstance(method, GBlending) and not has_val:
        raise ValueError("method 'gblend' estimates its weights on a validation split: set val_fraction > 0 "
                         "(or give data with a validation split)")
    if method.fits_on_validation and has_val and val_size is not None and val_size < 2:
        raise ValueError(f"method {method.name!r} is fitted on one half of the validation split and scored on "
                         f"the other: it needs at least 2 validation samples, got {val_size}")


def val_protocol(method: BalancingMethod, has_val: bool) -> str:
    return CROSS_FIT if method.fits_on_validation and has_val else PLAIN


def halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves (A, B) of ``range(n)``, seeded; A has ``n // 2`` samples."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2].sort().values, perm[n // 2:].sort().values


def evaluate_validation(method: BalancingMethod, model: nn.Module, loader, device, *, amp: bool,
                        seed: int) -> tuple[dict, dict | None]:
    """``(metrics, per-head losses for the method or None)`` on the validation split."""
    outputs = collect(model, loader, device, amp=amp)
    n = int(outputs["labels"].numel())
    if isinstance(method, (UnimodalEnsemble, AnchoredFusion)):
        return _cross_fit_combination(method, model, outputs, seed), None
    if isinstance(method, GBlending):
        a, b = halves(n, seed)
        return metrics_from_outputs(subset(outputs, b)), head_losses(subset(outputs, a))
    losses = head_losses(outputs) if outputs["head_logits"] else None
    return metrics_from_outputs(outputs), losses


def _members(method: UnimodalEnsemble | AnchoredFusion, outputs: dict) -> dict:
    """The held-out logits a combined prediction weighs: the heads (and the fusion head's, for a blend)."""
    if isinstance(method, AnchoredFusion):
        return {FUSED: outputs["fused_logits"], **outputs["head_logits"]}
    return outputs["head_logits"]


def _cross_fit_combination(method: UnimodalEnsemble | AnchoredFusion, model: nn.Module, outputs: dict,
                           seed: int) -> dict:
    """Validation metrics of a prediction whose weights are fitted on validation (the
    ensemble, the anchored blend): ``w`` fitted on half A predicts B and ``w`` fitted on
    B predicts A; the model then keeps ``w`` fitted on the whole split."""
    a, b = halves(int(outputs["labels"].numel()), seed)
    members = method.members if isinstance(method, AnchoredFusion) else method.modalities
    logits = torch.empty_like(outputs["logits"])
    for fit_on, score_on in ((a, b), (b, a)):
        part = subset(outputs, fit_on)
        w = method.fit_prediction(head_logits=_members(method, part), labels=part["labels"])
        logits[score_on] = ensemble_logits(_members(method, subset(outputs, score_on)), w, members).float()
    w = method.fit_prediction(head_logits=_members(method, outputs), labels=outputs["labels"])
    set_weights = getattr(model, "set_ensemble_weights", None)
    if set_weights is not None:
        set_weights(w)
    cross_fitted = dict(outputs, logits=logits)
    if isinstance(method, UnimodalEnsemble):  # its "fused" output is the ensemble itself: cross-fitted too
        cross_fitted["fused_logits"] = logits
    metrics = metrics_from_outputs(cross_fitted)
    prefix = "blend_w" if isinstance(method, AnchoredFusion) else "ensemble_w"
    metrics.update({f"{prefix}/{m}": float(w[i]) for i, m in enumerate(members)})
    return metrics


def initial_losses(method: BalancingMethod, model: nn.Module, train_loader, val_loader, device, *, amp: bool,
                   seed: int) -> tuple[dict, dict] | None:
    """Per-head losses of the initial model for ``method.begin``: an evaluation pass over the
    training split and over the validation split's half A (G-Blending only)."""
    if not isinstance(method, GBlending) or method.trains_copies or val_loader is None:
        return None
    train = head_losses(collect(model, train_loader, device, amp=amp))
    _, val = evaluate_validation(method, model, val_loader, device, amp=amp, seed=seed)
    assert val is not None  # G-Blending's validation pass always gives per-head losses
    return train, val


def share_state(method: BalancingMethod, model: nn.Module, ctx) -> None:
    """Make every rank hold rank 0's method state: what is fitted on validation (G-Blending's
    weights, the ensemble's ``w``) is computed there, where the validation split is evaluated."""
    if not ctx.enabled or not method.fits_on_validation:
        return
    box = [method.state_dict() if ctx.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    if not ctx.is_main:
        state = box[0]
        assert state is not None  # rank 0 broadcast its state
        method.load_state_dict(state)
        set_weights = getattr(model, "set_ensemble_weights", None)
        if isinstance(method, (UnimodalEnsemble, AnchoredFusion)) and set_weights is not None:
            set_weights(method.weights)


def _syncs_itself(method: BalancingMethod, net: nn.Module) -> bool:
    return getattr(method, "syncs_encoder_grads", False) and isinstance(net, nn.parallel.DistributedDataParallel)


def forward_context(method: BalancingMethod, net: nn.Module):
    """``net.no_sync()`` for a method that averages gradients itself under DDP (MMPareto:
    its backward passes must not all-reduce; it averages each loss's gradients before
    combining them), else a no-op context."""
    if _syncs_itself(method, net):
        assert isinstance(net, nn.parallel.DistributedDataParallel)
        return net.no_sync()
    return contextlib.nullcontext()


def average_other_gradients_(method: BalancingMethod, model: nn.Module, ctx) -> None:
    """Under DDP with such a method: average the gradients of every parameter outside its
    encoders (fusion and unimodal heads), which DDP did not reduce (``no_sync``)."""
    if not ctx.enabled or not getattr(method, "syncs_encoder_grads", False):
        return
    assert isinstance(method, MMPareto)  # the one method that averages its encoder gradients itself
    mine = {id(p) for ps in method.params.values() for p in ps}
    average_gradients_([p.grad for p in model.parameters() if id(p) not in mine])


class TrainerCopies:
    """The trainer's side of a method that trains copies (G-Blending's paper estimator;
    ``ogmge.methods.gblend.CopyTraining``). A copy is a deep copy of the (unwrapped) model
    with a fresh optimiser (``make_optimizer(params)``) at the run's current learning rate;
    it trains on the training loader, its batches shuffled from
    ``component_seed(seed, "gblend/<epoch>/<head>/<pass>")``; the run's own loader order and
    the global random state are restored afterwards. Held-out losses are validation half A's."""

    def __init__(self, model: nn.Module, make_optimizer, current_optimizer, train_loader, train_eval_loader,
                 val_loader, device, *, seed: int, epoch: int, amp: bool = False) -> None:
        self.model, self.make_optimizer, self.current = model, make_optimizer, current_optimizer
        self.train_loader, self.train_eval_loader, self.val_loader = train_loader, train_eval_loader, val_loader
        self.device, self.seed, self.epoch, self.amp = device, seed, epoch, amp
        self.passes: dict[str, int] = {}

    def clone(self):
        model = copy.deepcopy(self.model)
        opt = self.make_optimizer(model.parameters())
        for group, now in zip(opt.param_groups, self.current.param_groups):
            group["lr"] = now["lr"]
        return model, opt

    def train_epoch(self, clone, head: str) -> None:
        model, opt = clone
        k = self.passes[head] = self.passes.get(head, -1) + 1
        gen = getattr(self.train_loader, "generator", None)
        if gen is not None:
            gen.manual_seed(component_seed(self.seed, f"gblend/{self.epoch}/{head}/{k}"))
        model.train()
        for batch in self.train_loader:
            b = to_device(batch, self.device)
            out = model(b["inputs"], lengths=b["lengths"] or None, labels=b["labels"])
            logits = out.logits if head == FUSED else out.head_logits[head]
            loss = cross_entropy(logits, b["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def losses(self, clone, split: str) -> dict[str, float]:
        model = self.model if clone is None else clone[0]
        if split == "train":
            return head_losses(collect(model, self.train_eval_loader, self.device, amp=self.amp))
        outputs = collect(model, self.val_loader, self.device, amp=self.amp)
        a, _ = halves(int(outputs["labels"].numel()), self.seed)
        return head_losses(subset(outputs, a))


def estimate_from_copies(method: BalancingMethod, copies: TrainerCopies, device) -> None:
    """``method.estimate_from_copies`` with the global random state left as it was."""
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        method.estimate_from_copies(copies.epoch, copies)
