"""The protocol of a balancing method (docs/methods.md).

A balancing method acts at fixed points of one training step; every hook has
a no-op default here, so a method overrides only the points it uses::

    features = model.encode(inputs)                     # (inside the model)
    features = method.transform_features(features, ...) # 1. before fusion (training only)
    logits, head_logits = fusion(features), heads(features)
    total, terms = method.loss(logits, labels, head_logits=...)   # 2. losses
    method.backward(total, terms)                       # 3. backward (a method may own it)
    method.after_backward(modality_logits=..., labels=..., epoch=...)  # 4. gradients
    method.before_step(optimizer)                       # 5. just before optimizer.step()
    optimizer.step()
    ...
    method.end_epoch(epoch, train_losses=..., val_losses=...)      # 6. end of epoch
    method.split_features(epoch, train=..., heldout=...)  # 6'. after the checkpoint (if due)
    method.fit_prediction(head_logits=..., labels=...)  # 7. prediction (on validation outputs)

``state_dict``/``load_state_dict`` carry everything a resumed run needs, and
``trace_row`` returns the plain numbers a trace row logs for the last step.

Loss terms are keyed by *head*: ``"fused"`` for the fusion head's logits and
the modality name for a modality's own head. A method lives at layer 1: it
knows tensors, parameters and modality names, never a model class or a trainer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Key of the fusion head's loss term.
FUSED = "fused"


class BalancingMethod:
    """Base class of the balancing methods: every hook a no-op (plain fused cross-entropy).

    Class attributes declare what the trainer, the model builder, ``compare`` and
    the CLI need (``ogmge.methods.registry`` documents each): ``name``, ``paper``,
    ``options``, ``needs_heads``, ``predictions``, ``min_modalities``,
    ``max_modalities``, ``fits_on_validation``/``cross_fit``, ``tie_rank``,
    ``ddp``/``ddp_reason``, ``owns_backward``, ``owns_step``, ``depends_on``,
    ``paper_flags``, ``alias_of``. ``distributed_ok`` (``ddp != "refused"``) is kept for older code.
    """

    name = "normal"
    paper = ""
    options: tuple = ()  # of ogmge.methods.registry.Option
    needs_heads = False
    predictions: tuple[str, ...] = (FUSED,)
    min_modalities = 1
    max_modalities: int | None = None
    fits_on_validation = False
    cross_fit: str | None = None
    #: ``loss`` takes ``features={name: (B, D)}`` (the encoders' outputs, with graph)
    needs_features = False
    #: the trainer calls ``start_epoch`` with eval-mode encoder features of a training subset
    wants_epoch_features = False
    #: fraction of the training split ``start_epoch`` sees (when ``wants_epoch_features``)
    subset = 1.0
    #: after an epoch's checkpoint, when ``split_features_due(epoch)``, the trainer calls
    #: ``split_features`` with eval-mode encoder features of the whole training split and of
    #: the validation split (its half A with ``cross_fit = "split"``)
    wants_split_features = False
    tie_rank: float = 100.0
    ddp = "identical"
    ddp_reason = ""
    owns_backward = False
    owns_step = False
    #: With ``owns_step``: ``train_step`` computes every loss itself from the encoders' features
    #: (``out.features``), never through ``tools.loss`` or the fused logits, so another method's
    #: loss or feature transform would not reach it (a chain refuses such a pair).
    own_step_losses = False
    depends_on: tuple[str, ...] = ()
    #: ``(method, prediction)``: in ``compare`` this name stands for that pair of another method
    alias_of: tuple[str, str] | None = None
    paper_flags: Mapping = {"modulation": "Normal", "opm": False}
    #: ``transform_features`` changes the features (the loop passes it to the model's forward).
    transforms_features = False
    #: The method cannot train without a validation split (e.g. its estimate runs on it).
    needs_validation = False
    #: ``begin`` wants the initial model's per-head losses (one evaluation pass before training).
    wants_initial_losses = False
    #: A fresh run starts each encoder from its modality-alone run (``ctx.dependencies["alone/<name>"]``,
    #: its ``best.pt``): the trainer loads them after ``build`` (may be set per object from an option).
    loads_alone_encoders = False
    #: ``{dataset: registry.Preset}``: the authors' settings per paper dataset where they differ
    #: from the option defaults (used when a run does not set the option; registry docstring).
    dataset_presets: Mapping = {}
    #: The authors' optimiser, lr, epochs, ... with a ``source`` (informative only).
    authors_schedule: Mapping | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "distributed_ok" not in cls.__dict__:
            cls.distributed_ok = cls.ddp != "refused"
        elif not cls.distributed_ok and "ddp" not in cls.__dict__:  # the older spelling of ddp = "refused"
            cls.ddp = "refused"
            cls.ddp_reason = cls.__dict__.get("ddp_reason") or "its replicas would not stay identical"

    distributed_ok = True

    # construction -------------------------------------------------------------
    @classmethod
    def resolve_options(cls, options: Mapping | None = None) -> dict:
        """Every declared option: ``options`` validated (errors name the option and the
        value; unknown keys are refused), defaults for the rest."""
        from .registry import resolve_options

        return resolve_options(cls, options)

    @classmethod
    def build(cls, ctx, **options) -> BalancingMethod:
        """The method for a run, from its :class:`~ogmge.methods.registry.BuildContext` and options."""
        cls.resolve_options(options)
        return cls()

    def current_options(self) -> dict:
        """This object's option values (what a run's config records when the trainer is given
        the object): attributes named like the options, else their defaults."""
        return {o.name: getattr(self, o.name, o.default) for o in self.options}

    @classmethod
    def wrap_fusion(cls, fusion: nn.Module, **options) -> nn.Module:
        """The fusion head the model uses with this method (default ``fusion`` itself; MMCosine
        returns its cosine classifier on ``fusion``'s weights, refusing heads it cannot wrap)."""
        return fusion

    @classmethod
    def wrap_heads(cls, heads: nn.ModuleDict, fusion: nn.Module, **options) -> nn.ModuleDict:
        """The per-modality heads the model uses with this method, given its (wrapped) fusion head
        (default ``heads`` themselves). MLA returns views of its shared head, so a fitted prediction
        rule (``blend``) pools the shared head's per-modality outputs."""
        return heads

    @classmethod
    def model_parts(cls, ctx, **options) -> dict[str, nn.Module]:
        """Extra modules the model must hold for this method (``{name: module}``; default none)."""
        return {}

    #: The method trains copies of the model to estimate something (G-Blending's paper estimator):
    #: before each epoch the trainer calls :meth:`estimate_from_copies` with a copy trainer.
    trains_copies: bool = False

    def estimate_from_copies(self, epoch: int, copies) -> None:
        """Before training epoch ``epoch`` (with ``trains_copies``): ``copies`` clones the current
        model, trains a clone for an epoch on one head's loss and measures per-head losses on the
        training split and the held-out validation half A (``ogmge.methods.gblend.CopyTraining``)."""

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None) -> Tensor | tuple[Tensor, Tensor] | None:
        """Before training epoch ``epoch``: the epoch's sample indices into the training split
        (re-sampling; repeats allowed), or None for the usual shuffled pass.

        Or ``(indices, tags)``: ``tags`` (one int per index) tag each position of the epoch;
        the tag travels with its sample through shuffling, sharding and workers, and the loop
        hands the batch's tags (``LongTensor[B]``) to ``transform_features(..., tags=)`` (a
        method that returns no tags is never passed any). This is how a method tells, inside
        a batch, which samples are the copies it added and what to do with each.

        ``outputs(*, index=None, features=False)`` (when given) runs one evaluation pass
        (eval mode, no gradients) over the training split, or over its samples ``index`` in
        that order, and returns ``ogmge.training.metrics.collect``'s dict (CPU tensors:
        ``logits``, ``modality_logits``, ``labels``, ...; with ``features=True`` also
        ``features`` ``{name: (n, D)}``, the encoders' outputs)."""
        return None

    def train_step(self, batch, tools, *, epoch: int):
        """With ``owns_step``: run the whole step through ``tools``
        (:class:`~ogmge.methods.registry.StepTools`); return ``(out, total, terms, skip_reason)``."""
        raise NotImplementedError(f"method {self.name!r} declares owns_step but has no train_step")

    def new_param_groups(self) -> list[dict]:
        """Parameters the method created during training (e.g. layers grown at the end of an
        epoch) since the last call, as optimizer parameter groups (``{"params": [...]}``; default
        none). The trainer asks after ``begin_epoch`` and after ``end_epoch`` and adds each group
        to its optimizer with the hyper-parameters of the optimizer's first group at that moment
        (its current learning rate); checkpoints record every group's parameter names, so a
        resumed run re-adds them (after the model's state has rebuilt the parameters) before
        loading the optimizer's state. Not under DDP (the model would need re-wrapping)."""
        return []

    def sync_params(self) -> list[nn.Parameter]:
        """With ``ddp = "syncs"``: the parameters whose gradients the method averages itself."""
        return []

    def load_legacy_state(self, legacy: Mapping) -> None:
        """Restore from a checkpoint written before the registry, whose method state lived
        elsewhere: ``legacy`` has ``"modulator"`` (the trainer's OGM-GE state), ``"opm"`` and
        ``"feature_transform"`` (the model's extra state), each possibly None. Default: nothing."""

    # 1. features, before fusion ------------------------------------------------
    def transform_features(
        self,
        features: Mapping[str, Tensor],
        *,
        labels: Tensor | None = None,
        modality_logits: Mapping[str, Tensor] | None = None,
        baseline: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Features ``{name: (B, D)}`` the fusion head sees in training (default: unchanged).

        ``baseline``: ``{name: (D,)}`` features that stand in for a missing modality
        (zeros when None). A method whose ``begin_epoch`` returns ``(indices, tags)`` also
        takes ``tags=``: ``(B,)`` the batch's per-sample tags, passed only in such an epoch."""
        return dict(features)

    @property
    def sample_keep(self) -> Tensor | None:
        """(B,) bool: samples the fused loss may use after the last ``transform_features`` (None: all)."""
        return None

    # 2. losses -----------------------------------------------------------------
    def loss(
        self,
        logits: Tensor,
        labels: Tensor,
        *,
        head_logits: Mapping[str, Tensor] | None = None,
        sample_keep: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, terms)``: the loss to minimise and its per-head terms (with graph).

        Default: the fused cross-entropy (over ``sample_keep`` samples when given);
        unimodal heads, when present, are reported as terms but not trained."""
        fused = cross_entropy(logits, labels, sample_keep)
        terms = {FUSED: fused}
        for name, lg in (head_logits or {}).items():
            terms[name] = cross_entropy(lg, labels).detach()
        return fused, terms

    # 3. backward ---------------------------------------------------------------
    def backward(self, total: Tensor, terms: Mapping[str, Tensor], *, scaler=None) -> None:
        """Fill ``.grad`` (default ``total.backward()``, scaled when a ``GradScaler`` is given)."""
        (scaler.scale(total) if scaler is not None else total).backward()

    # 4. gradients after backward -------------------------------------------------
    def after_backward(
        self,
        *,
        modality_logits: Mapping[str, Tensor] | None = None,
        labels: Tensor | None = None,
        epoch: int | None = None,
        sample_weight: Tensor | None = None,
    ):
        """Change the gradients in place (after ``GradScaler.unscale_``); return stats or None."""
        return None

    # 5. optimizer step -----------------------------------------------------------
    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Last look at the gradients before ``optimizer.step()`` (after clipping)."""

    # 0. start of epoch -----------------------------------------------------------
    def start_epoch(self, epoch: int, *, features: Mapping[str, Tensor], labels: Tensor) -> None:
        """Before epoch ``epoch`` (when ``wants_epoch_features``): the encoders' eval-mode
        features ``{name: (n, D)}`` and labels of a seeded subset (``subset``) of the
        training split, drawn from ``(seed, name, epoch)``."""

    # 6. end of epoch -------------------------------------------------------------
    def split_features_due(self, epoch: int) -> bool:
        """Whether :meth:`split_features` wants the features after epoch ``epoch`` (with
        ``wants_split_features``; the trainer computes none otherwise)."""
        return self.wants_split_features

    def split_features(self, epoch: int, *, train, heldout) -> None:
        """After epoch ``epoch``'s checkpoint and before the next epoch's first step (with
        ``wants_split_features``, when :meth:`split_features_due`): ``train`` and ``heldout``
        are ``({modality: (n, D)}, labels)``, the encoders' eval-mode features of the whole
        training split and of the validation split (half A when ``cross_fit = "split"``; None
        without validation). Coming after the checkpoint, whatever it changes (the weights: the
        method holds ``ctx.encoders``) a resumed run changes again from the same weights; it
        never runs after the last epoch."""

    def begin(self, *, train_losses: Mapping[str, float] | None = None,
              val_losses: Mapping[str, float] | None = None) -> None:
        """Losses per head of the initial model, before the first step (if the method wants them)."""

    def end_epoch(
        self,
        epoch: int,
        *,
        train_losses: Mapping[str, float] | None = None,
        val_losses: Mapping[str, float] | None = None,
    ) -> None:
        """Per-head losses of the epoch just finished: training (the epoch's running
        means) and validation (never the test split)."""

    # 7. prediction -----------------------------------------------------------------
    def fit_prediction(self, *, head_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor | None:
        """Fit whatever the prediction depends on from held-out outputs; returns the
        fitted values (e.g. ensemble weights) or None."""
        return None

    # state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")

    def trace_row(self) -> dict:
        """Numbers (floats or 0-d tensors, read at the trace's next flush) about the last
        step/epoch for the trace (e.g. ``gblend_w/<head>``)."""
        return {}

    def epoch_row(self) -> dict:
        """Numbers for the epoch's metrics row, after ``end_epoch`` (default: ``trace_row()``)."""
        return self.trace_row()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BranchView(nn.Module):
    """Modality m's head as a view of a fusion head whose per-modality outputs share its
    parameters (MLA's shared head, AUG's head): ``forward(f_m) = head.modality_logits({m: f_m}, m)``.
    It holds no parameters of its own (the head is referenced, not registered: the fusion head
    owns it), so a model whose ``heads`` are views checkpoints nothing twice, and a fitted
    prediction rule (``blend``, ``ensemble``) pools the head's own per-modality outputs. What a
    method's ``wrap_heads`` returns (:func:`branch_views`)."""

    def __init__(self, head: nn.Module, modality: str) -> None:
        super().__init__()
        if not callable(getattr(head, "modality_logits", None)):
            raise TypeError(f"{type(head).__name__} has no modality_logits(features, modality) to view")
        modalities = tuple(getattr(head, "modalities", ()))
        if modality not in modalities:
            raise ValueError(f"the head has no modality {modality!r} (it has {list(modalities)})")
        object.__setattr__(self, "head", head)  # not a submodule: the fusion head owns it
        self.modality = modality

    def forward(self, features: Tensor) -> Tensor:
        return self.__dict__["head"].modality_logits({self.modality: features}, self.modality)

    def extra_repr(self) -> str:
        return f"modality={self.modality!r}"


def branch_views(heads: nn.ModuleDict, fusion: nn.Module, view: type[BranchView] = BranchView) -> nn.ModuleDict:
    """The per-modality ``heads`` replaced by views of ``fusion``'s branches (``view(fusion, m)``)."""
    return nn.ModuleDict({m: view(fusion, m) for m in heads})


def cross_entropy(logits: Tensor, labels: Tensor, sample_keep: Tensor | None = None) -> Tensor:
    """Mean cross-entropy in float32 or wider, over the kept samples when ``sample_keep`` is given."""
    lg = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if sample_keep is None:
        return F.cross_entropy(lg, labels)
    per = F.cross_entropy(lg, labels, reduction="none")
    w = sample_keep.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0)


def require_head_logits(what: str, modalities, head_logits) -> Mapping[str, Tensor]:
    """``head_logits`` if it holds exactly the heads of ``modalities``, else an error naming ``what``."""
    if head_logits is None or set(head_logits) != set(modalities):
        raise ValueError(f"{what} needs head_logits for {list(modalities)}, got "
                         f"{None if head_logits is None else sorted(head_logits)}")
    return head_logits


def head_loss_terms(what: str, modalities, logits: Tensor, labels: Tensor, head_logits,
                sample_keep: Tensor | None = None) -> dict[str, Tensor]:
    """The per-head cross-entropies ``{"fused": CE(logits), u: CE(head_u)}`` (``sample_keep``
    weighs the fused head's), after :func:`require_head_logits`."""
    head_logits = require_head_logits(what, modalities, head_logits)
    terms = {FUSED: cross_entropy(logits, labels, sample_keep)}
    for n in modalities:
        terms[n] = cross_entropy(head_logits[n], labels)
    return terms


# ---------------------------------------------------------------- validation helpers
def check_modalities(name: str, modalities) -> tuple[str, ...]:
    """Two or more distinct non-empty names, none of them ``"fused"``."""
    if isinstance(modalities, str) or not isinstance(modalities, Iterable):
        raise ValueError(f"{name} must be a list of modality names, got {modalities!r}")
    names = tuple(modalities)
    if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{name} must name two or more distinct modalities, got {list(names)}")
    if FUSED in names:
        raise ValueError(f"{name}: {FUSED!r} is the fusion head's key and cannot name a modality")
    return names


def parameter_groups(encoders, name: str = "encoders") -> dict[str, list[nn.Parameter]]:
    """``{modality: [trainable parameters]}`` from modules or iterables of parameters."""
    if isinstance(encoders, nn.ModuleDict):
        encoders = dict(encoders.items())
    if not isinstance(encoders, Mapping):
        raise TypeError(f"{name} must be a dict of modality name -> module or parameters, got "
                        f"{type(encoders).__name__}")
    check_modalities(name, list(encoders))
    out = {}
    for mod, enc in encoders.items():
        params = list(enc.parameters()) if isinstance(enc, nn.Module) else list(enc)
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError(f"{name}[{mod!r}] has no trainable parameters")
        out[mod] = params
    seen: set[int] = set()
    for mod, params in out.items():
        for p in params:
            if id(p) in seen:
                raise ValueError(f"{name}: a parameter is shared between encoders (seen again in {mod!r})")
            seen.add(id(p))
    return out
