"""Compositions of methods: ``a+b`` runs both at their points of the step (as optax's ``chain``).

The paper's ``--opm`` composes OPM with any OGM mode: ``ogm+opm`` / ``ogm_ge+opm``
(``TrainConfig(modulation="OGM", opm=True)``, or ``method: {name: ogm+opm}``).
Hooks run in member order: ``transform_features`` feeds each member's output to the
next and ``sample_keep`` is the samples every member keeps; ``after_backward``,
``before_step``, ``begin``/``begin_epoch``/``end_epoch`` call every member (``split_features``
and ``start_epoch`` every member that wants it then); ``new_param_groups`` and
``sync_params`` are every member's; ``loads_alone_encoders`` and ``depends_on`` any member's.

At most one member may own each of: the loss, the backward, the step (``train_step``),
the fusion head (``wrap_fusion``), the per-modality heads (``wrap_heads``), the copy
training (``trains_copies``), the epoch features (``wants_epoch_features``), and the
epoch's sample order (``begin_epoch`` returning indices; checked when it happens). A step
owner that computes its losses from the encoders' features itself (``own_step_losses``:
AUG, MLA) takes no member with a ``loss``, a feature transform or ``needs_features``,
which its step would never run. Every other pair is refused when the chain is composed
(``get("a+b")``, so at config time), with the reason. Options are the members' own, an
option name a member before it already uses taking the member's name as a prefix
(``ogm+opm``: OGM's ``start_epoch`` and OPM's ``opm_start_epoch``); state is keyed by
member name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .base import BalancingMethod
from .registry import BuildContext, resolve_options


def _overrides(cls: type, hook: str) -> bool:
    mine, base = getattr(cls, hook), getattr(BalancingMethod, hook)
    return getattr(mine, "__func__", mine) is not getattr(base, "__func__", base)  # classmethods: their functions


#: Hooks at most one member may define, and what owning each means (for the refusal's reason).
_SINGLE = {"loss": "define the loss", "backward": "own the backward", "train_step": "own the step",
           "wrap_fusion": "replace the fusion head", "wrap_heads": "replace the per-modality heads"}
#: Declarations at most one member may set, and what each means.
_SINGLE_FLAGS = {"trains_copies": "train copies of the model before each epoch",
                 "wants_epoch_features": "take the epoch's features (start_epoch)"}


def compose(classes: Sequence[type[BalancingMethod]]) -> type[Chain]:
    """The class of the chain of ``classes`` (named ``"a+b"``); refuses members that cannot
    run together, with the reason (module docstring)."""
    if len(classes) < 2:
        raise ValueError("a chain needs two or more methods")
    name = "+".join(c.name for c in classes)
    for hook, what in _SINGLE.items():
        who = [c.name for c in classes if _overrides(c, hook)]
        if len(who) > 1:
            raise ValueError(f"methods {' and '.join(who)} both {what} ({hook}): they cannot be chained ({name})")
    for flag, what in _SINGLE_FLAGS.items():
        who = [c.name for c in classes if getattr(c, flag)]
        if len(who) > 1:
            raise ValueError(f"methods {' and '.join(who)} both {what} ({flag}): they cannot be chained ({name})")
    stepper = next((c for c in classes if c.owns_step and c.own_step_losses), None)
    if stepper is not None:
        for c in classes:
            if c is stepper:
                continue
            part = ("loss" if _overrides(c, "loss") else "feature transform" if c.transforms_features
                    else "loss on the features" if c.needs_features else None)
            if part:
                raise ValueError(f"methods {stepper.name} and {c.name} cannot be chained ({name}): {stepper.name} "
                                 f"runs the step with its own losses from the encoders' features (own_step_losses), "
                                 f"which {c.name}'s {part} would never reach")
    options: list = []
    owners: dict[str, tuple[int, str]] = {}
    for i, c in enumerate(classes):
        for o in c.options:
            key = o.name if o.name not in owners else f"{c.name}_{o.name}"
            if key in owners:
                raise ValueError(f"chain {name}: option {key!r} is declared twice")
            owners[key] = (i, o.name)
            options.append(o if key == o.name else dataclasses.replace(o, name=key, paper_key=None))
    preds = [p for p in classes[0].predictions if all(p in c.predictions for c in classes[1:])]
    if not preds:
        raise ValueError(f"methods of {name} share no prediction rule")
    fits = [c for c in classes if c.fits_on_validation]
    if len({c.cross_fit for c in fits}) > 1:
        raise ValueError(f"methods {' and '.join(c.name for c in fits)} cross-fit their validation fits differently "
                         f"({', '.join(str(c.cross_fit) for c in fits)}): they cannot be chained ({name})")
    copier = next((c for c in classes if c.wants_epoch_features), None)
    ddp = "refused" if any(c.ddp == "refused" for c in classes) else (
        "syncs" if any(c.ddp == "syncs" for c in classes) else "identical")
    attrs = {
        "name": name,
        "paper": "; ".join(c.paper for c in classes if c.paper),
        "options": tuple(options),
        "option_owners": owners,
        "needs_heads": any(c.needs_heads for c in classes),
        "predictions": tuple(preds),
        "min_modalities": max(c.min_modalities for c in classes),
        "max_modalities": min((c.max_modalities for c in classes if c.max_modalities), default=None),
        "fits_on_validation": bool(fits),
        "cross_fit": fits[0].cross_fit if fits else None,
        "tie_rank": sum(c.tie_rank for c in classes),
        "ddp": ddp,
        "ddp_reason": "; ".join(c.ddp_reason for c in classes if c.ddp_reason),
        "owns_backward": any(c.owns_backward for c in classes),
        "owns_step": any(c.owns_step for c in classes),
        "depends_on": tuple(dict.fromkeys(d for c in classes for d in c.depends_on)),
        "paper_flags": _merge_flags(classes),
        "transforms_features": any(c.transforms_features for c in classes),
        "needs_validation": any(c.needs_validation for c in classes),
        "wants_initial_losses": any(c.wants_initial_losses for c in classes),
        "wants_split_features": any(c.wants_split_features for c in classes),
        "wants_epoch_features": copier is not None,
        "subset": copier.subset if copier is not None else 1.0,
        "trains_copies": any(c.trains_copies for c in classes),
        "needs_features": any(c.needs_features for c in classes),
        "own_step_losses": stepper is not None,
        "member_classes": tuple(classes),
        "dataset_presets": _merge_presets(classes, owners),
        "__doc__": f"The chain {name}: " + "; then ".join(c.name for c in classes) + ".",
        "__module__": __name__,
    }
    return type(f"Chain[{name}]", (Chain,), attrs)


def _merge_presets(classes, owners: Mapping[str, tuple[int, str]]) -> dict:
    """The members' dataset presets under the chain's option names (sources joined)."""
    from .registry import Preset

    key_of = {(i, own): key for key, (i, own) in owners.items()}
    merged: dict[str, tuple[dict, list]] = {}
    for i, c in enumerate(classes):
        for dataset, preset in (c.dataset_presets or {}).items():
            opts, sources = merged.setdefault(dataset, ({}, []))
            opts.update({key_of[(i, k)]: v for k, v in preset.options.items()})
            sources.append(f"{c.name}: {preset.source}")
    return {d: Preset(opts, "; ".join(sources)) for d, (opts, sources) in merged.items()}


def _merge_flags(classes) -> dict:
    flags = {"modulation": "Normal", "opm": False}
    for c in classes:
        pf = dict(c.paper_flags)
        if pf.get("modulation", "Normal") != "Normal":
            flags["modulation"] = pf["modulation"]
        if pf.get("opm"):
            flags["opm"] = True
    return flags


class Chain(BalancingMethod):
    """Methods run one after the other at each point of the step (see the module docstring)."""

    member_classes: tuple[type[BalancingMethod], ...] = ()
    #: ``{chain option: (member index, the member's option name)}``
    option_owners: dict[str, tuple[int, str]] = {}

    def __init__(self, members: Sequence[BalancingMethod]) -> None:
        self.members = list(members)
        self._loss_owner = next((m for m in self.members if _overrides(type(m), "loss")), None)
        self._backward_owner = next((m for m in self.members if _overrides(type(m), "backward")), None)
        self._step_owner = next((m for m in self.members if _overrides(type(m), "train_step")), None)
        self._tagger: BalancingMethod | None = None  # the member whose begin_epoch returned tags
        #: a fresh run loads the alone runs' encoders when any member asks (an object's own setting)
        self.loads_alone_encoders = any(getattr(m, "loads_alone_encoders", False) for m in self.members)

    @classmethod
    def build(cls, ctx: BuildContext, **options) -> Chain:
        opts = resolve_options(cls, options)
        return cls([c.build(ctx, **cls._member_options(i, opts)) for i, c in enumerate(cls.member_classes)])

    @classmethod
    def option_key(cls, member: str, option: str) -> str | None:
        """The chain's name for member ``member``'s option ``option`` (None: no such option)."""
        for key, (i, own) in cls.option_owners.items():
            if cls.member_classes[i].name == member and own == option:
                return key
        return None

    @classmethod
    def _member_options(cls, index: int, options: Mapping) -> dict:
        return {own: options[key] for key, (i, own) in cls.option_owners.items() if i == index and key in options}

    @classmethod
    def wrap_fusion(cls, fusion, **options):
        """The fusion head of the member that replaces it (at most one), with its options."""
        return cls._forward_wrap("wrap_fusion", options, fusion)

    @classmethod
    def wrap_heads(cls, heads, fusion, **options):
        """The per-modality heads of the member that replaces them (at most one), with its options."""
        return cls._forward_wrap("wrap_heads", options, heads, fusion)

    @classmethod
    def _forward_wrap(cls, hook: str, options: Mapping, *args):
        for i, c in enumerate(cls.member_classes):
            if _overrides(c, hook):
                return getattr(c, hook)(*args, **cls._member_options(i, options))
        return args[0]

    @classmethod
    def model_parts(cls, ctx, **options) -> dict:
        parts: dict = {}
        for i, c in enumerate(cls.member_classes):
            parts.update(c.model_parts(ctx, **cls._member_options(i, options)))
        return parts

    def current_options(self) -> dict:
        out = {}
        for key, (i, own) in self.option_owners.items():
            values = self.members[i].current_options()
            if own in values:
                out[key] = values[own]
        return out

    def transform_features(self, features, *, labels=None, modality_logits=None, baseline=None, tags=None):
        out = dict(features)
        for m in self.members:
            # tags go to the member whose begin_epoch returned them (the others never asked for any)
            extra = {"tags": tags} if tags is not None and m is self._tagger else {}
            out = m.transform_features(out, labels=labels, modality_logits=modality_logits, baseline=baseline,
                                       **extra)
        return out

    @property
    def sample_keep(self) -> Tensor | None:
        keep = None
        for m in self.members:
            k = m.sample_keep
            if k is not None:
                keep = k if keep is None else keep & k
        return keep

    def loss(self, logits, labels, *, head_logits=None, sample_keep=None, features=None):
        keep = sample_keep if sample_keep is not None else self.sample_keep
        if self._loss_owner is not None:
            extra = {"features": features} if self._loss_owner.needs_features else {}
            return self._loss_owner.loss(logits, labels, head_logits=head_logits, sample_keep=keep, **extra)
        return super().loss(logits, labels, head_logits=head_logits, sample_keep=keep)

    def train_step(self, batch, tools, *, epoch: int):
        """The step owner's step (``owns_step``); its tools call the chain's backward, every
        member's ``after_backward`` (in ``guard``) and ``before_step``."""
        if self._step_owner is None:
            return super().train_step(batch, tools, epoch=epoch)
        return self._step_owner.train_step(batch, tools, epoch=epoch)

    def new_param_groups(self) -> list[dict]:
        return [g for m in self.members for g in m.new_param_groups()]

    def start_epoch(self, epoch, *, features, labels) -> None:
        for m in self.members:
            if m.wants_epoch_features:
                m.start_epoch(epoch, features=features, labels=labels)

    def estimate_from_copies(self, epoch, copies) -> None:
        for m in self.members:
            if m.trains_copies:
                m.estimate_from_copies(epoch, copies)

    def backward(self, total, terms, *, scaler=None) -> None:
        if self._backward_owner is not None:
            return self._backward_owner.backward(total, terms, scaler=scaler)
        return super().backward(total, terms, scaler=scaler)

    def after_backward(self, *, modality_logits=None, labels=None, epoch=None, sample_weight=None):
        stats = None
        for m in self.members:
            got = m.after_backward(modality_logits=modality_logits, labels=labels, epoch=epoch,
                                   sample_weight=sample_weight)
            stats = got if got is not None else stats
        return stats

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        for m in self.members:
            m.before_step(optimizer)

    def begin(self, *, train_losses=None, val_losses=None) -> None:
        for m in self.members:
            m.begin(train_losses=train_losses, val_losses=val_losses)

    def end_epoch(self, epoch, *, train_losses=None, val_losses=None) -> None:
        for m in self.members:
            m.end_epoch(epoch, train_losses=train_losses, val_losses=val_losses)

    def _split_members(self, epoch: int) -> list[BalancingMethod]:
        return [m for m in self.members if m.wants_split_features and m.split_features_due(epoch)]

    def split_features_due(self, epoch: int) -> bool:
        return bool(self._split_members(epoch))

    def split_features(self, epoch, *, train, heldout) -> None:
        for m in self._split_members(epoch):
            m.split_features(epoch, train=train, heldout=heldout)

    def begin_epoch(self, epoch, *, train_size, outputs=None):
        chosen, self._tagger, sampler = None, None, None
        for m in self.members:
            got = m.begin_epoch(epoch, train_size=train_size, outputs=outputs)
            if got is not None:
                if sampler is not None:
                    raise ValueError(f"methods {sampler.name} and {m.name} both re-sample epoch {epoch}'s training "
                                     f"samples (begin_epoch): they cannot be chained ({self.name})")
                chosen, self._tagger, sampler = got, (m if isinstance(got, tuple) else None), m
        return chosen

    def sync_params(self) -> list:
        return [p for m in self.members for p in m.sync_params()]

    def state_dict(self) -> dict:
        return {m.name: m.state_dict() for m in self.members}

    def load_state_dict(self, state: Mapping) -> None:
        for m in self.members:
            if m.name in state:
                m.load_state_dict(state[m.name])

    def load_legacy_state(self, legacy: Mapping) -> None:
        for m in self.members:
            m.load_legacy_state(legacy)

    def trace_row(self) -> dict:
        row: dict = {}
        for m in self.members:
            row.update(m.trace_row())
        return row

    def epoch_row(self) -> dict:
        row: dict = {}
        for m in self.members:
            row.update(m.epoch_row())
        return row

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.members))})"


__all__ = ["Chain", "compose"]
