"""The trainer's side of the balancing methods (docs/methods.md): checks, the initial
model's per-head losses, validation with cross-fitting, the prediction's fitted
weights, and DDP agreement. Everything here asks the method's declarations
(``ogmge.methods.registry``) and the model's combiner; nothing names a method.

**Cross-fitting.** What is fitted on the validation split must not be scored on
the samples it was fitted on. The split is cut into two seeded halves A and B
(:func:`halves`):

- a method with ``cross_fit = "split"`` (G-Blending's estimate) sees the per-head
  losses of half A only; the selection score and the reported validation metrics
  are half B's;
- a prediction with fitted weights (``model.combiner``: the ``ensemble`` and
  ``blend`` rules): ``w`` fitted on A predicts B and ``w`` fitted on B predicts A;
  the metrics are those of these cross-fitted predictions over the whole split
  (accuracy = the two halves' mean, weighted by size). The model then keeps ``w``
  fitted on the whole split, for the test split and for prediction.

Everything else is scored on the whole validation split (``"plain"``).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ogmge.combination import ensemble_logits
from ogmge.methods import FUSED, BalancingMethod, average_gradients_, cross_entropy
from ogmge.seeding import component_seed

from .metrics import collect, head_losses, metrics_from_outputs, subset, to_device

CROSS_FIT = "cross-fit"
PLAIN = "plain"

__all__ = ["CROSS_FIT", "PLAIN", "check_method", "collect", "evaluate_validation", "halves", "initial_losses",
           "prediction_row", "share_state", "val_protocol"]


def combiner_of(model: nn.Module):
    """The model's prediction rule (``model.combiner``) when its weights are fitted, else None."""
    comb = getattr(model, "combiner", None)
    return comb if comb is not None and getattr(comb, "fitted", False) else None


def check_method(method: BalancingMethod, *, distributed: bool, has_val: bool, val_size: int | None = None) -> None:
    """Refuse what a method cannot do, with errors naming the method."""
    if distributed and method.ddp == "refused":
        why = method.ddp_reason or "its replicas would not stay identical"
        raise ValueError(f"method {method.name!r} is not supported under DDP ({why}); train it on one process")
    if method.needs_validation and not has_val:
        raise ValueError(f"method {method.name!r} needs a validation split (it estimates on it): set "
                         "val_fraction > 0 (or give data with a validation split)")
    if method.fits_on_validation and has_val and val_size is not None and val_size < 2:
        raise ValueError(f"method {method.name!r} is fitted on one half of the validation split and scored on "
                         f"the other: it needs at least 2 validation samples, got {val_size}")


def val_protocol(method: BalancingMethod, model: nn.Module, has_val: bool) -> str:
    fitted = method.fits_on_validation or combiner_of(model) is not None
    return CROSS_FIT if fitted and has_val else PLAIN


def halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves (A, B) of ``range(n)``, seeded; A has ``n // 2`` samples."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2].sort().values, perm[n // 2:].sort().values


def evaluate_validation(method: BalancingMethod, model: nn.Module, loader, device, *, amp: bool,
                        seed: int, outputs: dict | None = None) -> tuple[dict, dict | None]:
    """``(metrics, per-head losses for the method or None)`` on the validation split
    (``outputs``: the split's outputs already collected from ``model``, else collected here)."""
    if outputs is None:
        outputs = collect(model, loader, device, amp=amp)
    n = int(outputs["labels"].numel())
    comb = combiner_of(model)
    if method.cross_fit == "split":
        a, b = halves(n, seed)
        return metrics_from_outputs(subset(outputs, b)), head_losses(subset(outputs, a))
    if comb is not None:
        return _cross_fit_combination(comb, outputs, seed), None
    losses = head_losses(outputs) if outputs["head_logits"] else None
    return metrics_from_outputs(outputs), losses


def _members(comb, outputs: dict) -> dict:
    """The held-out logits the combined prediction weighs."""
    fused = outputs.get("fused_logits")
    return comb.member_logits(fused if fused is not None else outputs["logits"], outputs["head_logits"])


def _cross_fit_combination(comb, outputs: dict, seed: int) -> dict:
    """Validation metrics of a prediction whose weights are fitted on validation: ``w``
    fitted on half A predicts B and ``w`` fitted on B predicts A; the combiner then keeps
    ``w`` fitted on the whole split."""
    a, b = halves(int(outputs["labels"].numel()), seed)
    logits = torch.empty_like(outputs["logits"])
    for fit_on, score_on in ((a, b), (b, a)):
        part = subset(outputs, fit_on)
        w = comb.fit_weights(_members(comb, part), part["labels"])
        logits[score_on] = ensemble_logits(_members(comb, subset(outputs, score_on)), w, comb.members).float()
    comb.fit(_members(comb, outputs), outputs["labels"])
    cross_fitted = dict(outputs, logits=logits)
    if not comb.uses_fusion:  # the ensemble's "fused" output is the ensemble itself: cross-fitted too
        cross_fitted["fused_logits"] = logits
    metrics = metrics_from_outputs(cross_fitted)
    metrics.update(comb.trace_row())
    return metrics


def prediction_row(model: nn.Module) -> dict:
    """The prediction's fitted weights for an epoch's metrics row (``ensemble_w/…``, ``blend_w/…``)."""
    comb = combiner_of(model)
    return {} if comb is None else comb.trace_row()


def initial_losses(method: BalancingMethod, model: nn.Module, train_loader, val_loader, device, *, amp: bool,
                   seed: int) -> tuple[dict, dict] | None:
    """Per-head losses of the initial model for ``method.begin`` (``wants_initial_losses``): an
    evaluation pass over the training split and over the validation split (half A, when split)."""
    if not method.wants_initial_losses or val_loader is None:
        return None
    train = head_losses(collect(model, train_loader, device, amp=amp))
    _, val = evaluate_validation(method, model, val_loader, device, amp=amp, seed=seed)
    if val is None:
        return None
    return train, val


def share_state(method: BalancingMethod, model: nn.Module, ctx) -> None:
    """Make every rank hold rank 0's fitted state: what is fitted on validation (the method's
    state, the prediction's weights) is computed there, where validation is evaluated."""
    if not ctx.enabled:
        return
    comb = combiner_of(model)
    if comb is not None:
        torch.distributed.broadcast(comb.weights, src=0)
    if not method.fits_on_validation:
        return
    box = [method.state_dict() if ctx.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    if not ctx.is_main:
        state = box[0]
        assert state is not None  # rank 0 broadcast its state
        method.load_state_dict(state)


def _syncs_itself(method: BalancingMethod, net: nn.Module) -> bool:
    return method.ddp == "syncs" and isinstance(net, nn.parallel.DistributedDataParallel)


def forward_context(method: BalancingMethod, net: nn.Module):
    """``net.no_sync()`` for a method that averages gradients itself under DDP (``ddp =
    "syncs"``: its backward passes must not all-reduce), else a no-op context."""
    if _syncs_itself(method, net):
        assert isinstance(net, nn.parallel.DistributedDataParallel)
        return net.no_sync()
    return contextlib.nullcontext()


def average_other_gradients_(method: BalancingMethod, model: nn.Module, ctx) -> None:
    """Under DDP with a ``"syncs"`` method: average the gradients of every parameter outside
    its ``sync_params()`` (e.g. the fusion and unimodal heads), which DDP did not reduce."""
    if not ctx.enabled or method.ddp != "syncs":
        return
    mine = {id(p) for p in method.sync_params()}
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
