"""The method registry: every balancing method by name, its options declared once.

A method is **one class in one file**. It derives from
:class:`~ogmge.methods.BalancingMethod`, declares what the trainer, the model
builder, ``compare`` and the CLI need as class attributes, declares its options
as :class:`Option` objects, builds itself from a :class:`BuildContext`, and is
registered by name with :func:`register`::

    from ogmge.methods import BalancingMethod, Option, Space, register

    @register
    class Scaled(BalancingMethod):
        '''The fused loss times a constant (an example, not a paper).'''

        name = "scaled"                          # the CLI/YAML name; unique
        paper = "none (an example)"              # the paper, or why there is none
        options = (
            Option("factor", float, 2.0, "multiplier of the fused loss", low=0.0, low_open=True,
                   source="example", space=Space.log_uniform(0.1, 10.0)),
        )
        tie_rank = 10.0                          # place in compare's tie order (simpler first)

        def __init__(self, *, factor: float = 2.0) -> None:
            self.factor = factor

        @classmethod
        def build(cls, ctx, **options):
            return cls(**cls.resolve_options(options))

        def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
            total, terms = super().loss(logits, labels, head_logits=head_logits, sample_keep=sample_keep)
            return self.factor * total, terms

``ogmge train --plugin my_module --method scaled --method-opt factor=3`` (or the
environment variable ``OGMGE_PLUGINS=my_module``) then trains it; a package can
also declare an entry point in the group ``ogmge.methods`` (``name = "module"`` or
``"module:Class"``), imported the first time a name is looked up.

**Declarations** (class attributes of :class:`~ogmge.methods.BalancingMethod`;
defaults in brackets):

- ``name`` [``"normal"``], ``paper`` [``""``]: the name, and the citation.
- ``options`` [``()``]: the method's hyper-parameters (:class:`Option`); YAML
  ``method: {name: NAME, KEY: VALUE}``, ``--method-opt KEY=VALUE``, ``ogmge
  methods NAME``, validation (:meth:`BalancingMethod.resolve_options`) and the
  docs table all derive from them.
- ``needs_heads`` [False]: the model gets a trainable linear head per modality
  (``ModelOutput.head_logits``; in the context as ``ctx.heads``).
- ``predictions`` [``("fused",)``]: the prediction rules the method supports, the
  first the default (``"fused"``: the fusion head; the ``stacked`` rule of
  :mod:`ogmge.methods.stacked`, a validation-fitted log-linear pool of heads, as
  ``"blend"`` over the fused and the modality heads or ``"ensemble"`` over the
  modality heads only; more to come).
- ``min_modalities`` [1], ``max_modalities`` [None]: modalities it can balance.
- ``fits_on_validation`` [False] and ``cross_fit`` [None]: whether it fits
  something on the validation split, and how its selection score is then
  cross-fitted on two seeded halves A/B: ``"split"`` (the method sees half A's
  per-head losses, half B scores: G-Blending) or ``"swap"`` (prediction weights
  fitted on A score B and vice versa, then refitted on the whole split).
- ``tie_rank`` [0]: the order ``compare`` prefers among methods within its
  tie tolerance (lower is simpler; ``normal`` is 0).
- ``ddp`` [``"identical"``], ``ddp_reason`` [``""``]: under DDP the replicas stay
  identical with no help (``"identical"``), the method averages what it needs
  itself (``"syncs"``: the loop runs its forward in ``no_sync()`` and averages the
  gradients of every parameter outside ``sync_params()``), or it refuses DDP
  (``"refused"``, ``ddp_reason`` says why).
- ``owns_backward`` [False]: ``backward`` does more than ``total.backward()``.
- ``owns_step`` [False]: the method runs the whole step (several optimizer
  steps per batch, two passes with a weight perturbation) through
  :meth:`BalancingMethod.train_step` and the :class:`StepTools` it is given.
- ``own_step_losses`` [False]: with ``owns_step``, ``train_step`` computes every
  loss itself from the encoders' features (AUG, MLA), so a chain refuses members
  whose loss, feature transform or ``needs_features`` it would never run.
- ``depends_on`` [``()``]: runs it needs before it can train, e.g. ``("alone",)``
  for the comparison's modality-alone runs (teachers, warm starts): ``compare``
  schedules the alone runs of the same seed first and sets the run's
  ``TrainConfig.dependencies`` to ``{"alone/<modality>": run dir}``, which arrives
  as ``ctx.dependencies`` (a plain ``train`` passes its config's ``dependencies``, or the
  ``dependencies=`` argument of ``train``; by default ``{}``: the method must then
  do without, or refuse).
- ``wants_split_features`` [False]: after an epoch's checkpoint, when
  ``split_features_due(epoch)`` says so, the trainer calls
  ``split_features(epoch, train=(features, labels), heldout=(features, labels))``
  with the encoders' eval-mode features of the whole training split and of the
  validation split (half A with ``cross_fit = "split"``), before the next epoch's
  first step (a resumed run repeats it from the checkpoint's weights; never
  after the last epoch). Diagnosing & Re-learning re-initialises encoders there.
- ``loads_alone_encoders`` [False] (may be set per object from an option): a
  fresh run starts each encoder from its modality-alone run's ``best.pt``; the
  trainer loads them after ``build``
  (:func:`ogmge.training.checkpoint.load_alone_encoders_`).
- ``alias_of`` [None]: ``(method, prediction)`` when the name is kept for a pair of
  another method (``anchored``: ``("multitask", "blend")``); ``compare`` then trains
  that method once and reports the pair's row (``multitask+stacked``), and
  ``ogmge train --method NAME`` still trains the class itself.
- ``paper_flags`` [``{}``]: the paper's flat settings it means
  (``{"modulation": "OGM_GE", "opm": False}``), for the paper's own flags.
- ``dataset_presets`` [``{}``]: ``{dataset: Preset({option: value}, source=...)}``,
  the authors' settings on a paper dataset where they differ from the option
  defaults (OGM-GE's α 0.1 on VGGSound). A run on that dataset that does not
  set the option uses the preset, and its saved config records it
  (``TrainConfig.method_preset``); an explicit option wins. Checked at
  registration: a dataset name this project does not know, an unknown option,
  a value the option refuses or a missing source is an error.
- ``authors_schedule`` [None]: the optimiser, learning rate, epochs (and batch
  size, decay) the authors trained with, ``{"optimizer": ..., "lr": ...,
  "epochs": ..., "source": "owner/repo file:line"}``; informative only (a run
  says it uses the shared schedule, and what the authors used).

**Hooks** (all optional; see ``ogmge.methods.base`` for the per-step hooks):

- ``build(ctx, **options)`` (classmethod): the method, from the context and its
  options (validate them with ``cls.resolve_options(options)``).
- ``model_parts(ctx, **options)`` (classmethod): extra modules the model must
  hold, ``{name: nn.Module}`` (a shared head, a cosine classifier, layers used
  later in training): created before the model, trained and checkpointed with
  it, handed to ``build`` as ``ctx.parts``.
- ``wrap_fusion(fusion, **options)`` / ``wrap_heads(heads, fusion, **options)``
  (classmethods): the fusion head and the per-modality heads (when the model has
  them) the model uses with the method (default: unchanged); e.g. MMCosine's
  cosine classifier, MLA's shared head and its per-modality views.
- ``begin_epoch(epoch, *, train_size, outputs)``: before each training epoch;
  may return the epoch's sample indices into the training split (re-sampling;
  repeats allowed), or ``(indices, tags)`` with one int tag per position (the
  batches then carry ``tag`` and the loop passes the batch's tags to
  ``transform_features(..., tags=)``), or None (the usual shuffled pass).
  ``outputs(*, index=None, features=False)`` runs one evaluation pass over the
  training split (or its samples ``index``) on demand, with the encoders'
  features when asked.
- ``train_step(batch, tools, *, epoch)``: only with ``owns_step``.

Names are unique: registering a second class under a taken name is an error
(a plug-in cannot replace a built-in).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ogmge.seeding import component_seed

if TYPE_CHECKING:
    from torch import Tensor, nn

    from .base import BalancingMethod

#: The entry-point group through which an installed package adds methods.
ENTRY_POINT_GROUP = "ogmge.methods"
#: Comma-separated modules imported before a method is looked up (like ``--plugin``).
PLUGIN_ENV = "OGMGE_PLUGINS"
#: ``ddp`` declarations.
DDP_KINDS = ("identical", "syncs", "refused")
#: ``cross_fit`` declarations (None: scored on the whole validation split).
CROSS_FITS = ("split", "swap")
#: Option types a config may give.
OPTION_TYPES = (bool, int, float, str)
#: Datasets a method may declare presets for (``dataset_presets``): the paper datasets.
PRESET_DATASETS = ("cremad", "kinetics_sounds", "vggsound", "ave")
#: Keys an ``authors_schedule`` may hold (``source`` is required).
SCHEDULE_KEYS = ("optimizer", "lr", "epochs", "batch_size", "lr_decay", "weight_decay", "note", "source")


# ------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Space:
    """A tuning search space for one option (read by the hyper-parameter search).

    ``kind``: ``"uniform"``/``"log_uniform"`` (floats in ``[low, high]``),
    ``"int"``/``"log_int"`` (integers in ``[low, high]``), or ``"categorical"``
    (one of ``choices``)."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    KINDS = ("uniform", "log_uniform", "int", "log_int", "categorical")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"space kind must be one of {self.KINDS}, got {self.kind!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError("a categorical space needs choices")
            return
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(f"a {self.kind} space needs low <= high, got [{self.low}, {self.high}]")
        if self.kind.startswith("log") and self.low <= 0:
            raise ValueError(f"a {self.kind} space needs low > 0, got {self.low}")

    @classmethod
    def uniform(cls, low: float, high: float) -> Space:
        return cls("uniform", float(low), float(high))

    @classmethod
    def log_uniform(cls, low: float, high: float) -> Space:
        return cls("log_uniform", float(low), float(high))

    @classmethod
    def int_range(cls, low: int, high: int, *, log: bool = False) -> Space:
        return cls("log_int" if log else "int", int(low), int(high))

    @classmethod
    def categorical(cls, *choices) -> Space:
        return cls("categorical", choices=tuple(choices))

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Option:
    """One hyper-parameter of a method, declared once.

    ``name`` (the keyword of the method's constructor and the YAML/``--method-opt``
    key), ``type`` (bool, int, float or str), ``default``, ``help`` (one line),
    the valid range (``low``/``high``, open with ``low_open``/``high_open``) or
    ``choices``, ``allow_none``; ``source`` (where the default comes from: the
    authors' ``file:line`` or the paper's section); ``space`` (the tuning search
    space, :class:`Space`; None: not tuned); ``paper_key`` (the flat config key
    of the paper's own flag that sets it, e.g. ``"alpha"``)."""

    name: str
    type: type
    default: Any
    help: str
    source: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    allow_none: bool = False
    space: Space | None = None
    paper_key: str | None = None
    legacy_key: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name == "name":
            raise ValueError(f"an option name must be an identifier other than 'name', got {self.name!r}")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: type must be one of bool, int, float, str, got {self.type!r}")
        if not self.help or "\n" in self.help:
            raise ValueError(f"option {self.name!r} needs a one-line help")
        try:
            self.validate(self.default)
        except ValueError as exc:
            raise ValueError(f"option {self.name!r}: its default does not pass its own checks ({exc})") from None

    def validate(self, value: Any, *, owner: str = "") -> Any:
        """``value`` converted to the option's type (int -> float; a YAML string of a
        number is not accepted), or a ValueError naming the option and the value."""
        where = f"method {owner} option {self.name}" if owner else f"option {self.name}"
        if value is None:
            if self.allow_none:
                return None
            raise ValueError(f"{where} must be given (got None)")
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, got {value!r}")
            return value
        if t in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where} must be {'an integer' if t is int else 'a number'}, got {value!r}")
            if t is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(f"{where} must be an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{where} must be finite, got {value!r}")
            self._check_range(value, where)
        elif t is str and not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        return value

    def _check_range(self, value: float, where: str) -> None:
        lo, hi = self.low, self.high
        bad_lo = lo is not None and (value <= lo if self.low_open else value < lo)
        bad_hi = hi is not None and (value >= hi if self.high_open else value > hi)
        if bad_lo or bad_hi:
            raise ValueError(f"{where} must be in {self.range_text()}, got {value!r}")

    def range_text(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.low is None and self.high is None:
            return "any"
        left = ("(" if self.low_open else "[") + ("-inf" if self.low is None else f"{self.low:g}")
        right = "inf)" if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        return f"{left}, {right}"

    def parse(self, text: str, *, owner: str = "") -> Any:
        """The value of a command-line string (``--method-opt KEY=TEXT``), validated."""
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if self.type is str and not isinstance(value, str) and value is not None:
            value = text
        elif self.type in (int, float) and isinstance(value, str):  # YAML 1.1 reads "2e-1" as a string
            try:
                value = float(value) if self.type is float or not value.strip().lstrip("+-").isdigit() else int(value)
            except ValueError:
                pass
        return self.validate(value, owner=owner)

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
                "range": self.range_text(), "source": self.source,
                "space": None if self.space is None else self.space.to_dict(), "paper_key": self.paper_key,
                "legacy_key": self.legacy_key}


@dataclass(frozen=True)
class Preset:
    """The authors' settings of a method on one dataset: ``options`` ``{option: value}``
    and ``source`` (their ``file:line``, README line or the paper's section)."""

    options: Mapping[str, Any]
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.options, Mapping) or not self.options:
            raise ValueError(f"a preset needs a non-empty mapping of options, got {self.options!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"a preset needs a source (where the authors give {dict(self.options)}), got "
                             f"{self.source!r}")
        object.__setattr__(self, "options", dict(self.options))

    def text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items()) + f" ({self.source})"


def dataset_preset(cls: type[BalancingMethod], dataset: str | None) -> Preset | None:
    """Method ``cls``'s preset for ``dataset`` (None: it declares none there)."""
    return (getattr(cls, "dataset_presets", None) or {}).get(dataset) if dataset else None


def schedule_text(schedule: Mapping[str, Any]) -> str:
    """``sgd, lr 0.001, 100 epochs, batch 64 (source)``: an ``authors_schedule`` in words."""
    parts = [str(schedule["optimizer"])] if "optimizer" in schedule else []
    if "lr" in schedule:
        parts.append(f"lr {schedule['lr']:g}" if isinstance(schedule["lr"], (int, float)) else f"lr {schedule['lr']}")
    if "epochs" in schedule:
        parts.append(f"{schedule['epochs']} epochs")
    if "batch_size" in schedule:
        parts.append(f"batch {schedule['batch_size']}")
    for key, label in (("lr_decay", "decay"), ("weight_decay", "weight decay"), ("note", "")):
        if key in schedule:
            parts.append(f"{label} {schedule[key]}".strip())
    return ", ".join(parts) + f" ({schedule['source']})"


def resolve_options(cls: type[BalancingMethod], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option of method class ``cls``: ``values`` validated, defaults for the rest.

    An unknown key is an error that lists the method's options."""
    declared = {o.name: o for o in getattr(cls, "options", ())}
    values = dict(values or {})
    unknown = sorted(set(values) - set(declared))
    label = getattr(cls, "name", cls.__name__)
    if unknown:
        known = ", ".join(declared) or "none"
        raise ValueError(f"method {label} has no option {', '.join(map(repr, unknown))} (its options: {known})")
    return {n: o.validate(values[n], owner=label) if n in values else o.default for n, o in declared.items()}


# ------------------------------------------------------------------------------- context
@dataclass
class BuildContext:
    """What a method is built from (``BalancingMethod.build(ctx, **options)``).

    ``modalities`` (names, in the model's order), ``feature_dims`` ``{name: D}``
    (the encoders' output sizes), ``num_classes``; once the model exists also
    ``encoders`` ``{name: module}``, ``heads`` ``{name: module}`` (with
    ``needs_heads``), ``fusion`` (the fusion head) and ``parts`` (what
    ``model_parts`` supplied). ``seed``: the run's seed; draw every random stream
    from ``ctx.component_seed(name)`` / ``ctx.generator(name)``. ``world_size``,
    ``device``, ``process_group`` (DDP), ``dependencies`` (``{key: run dir}`` for
    ``depends_on``), ``epochs`` (the run's length, when known)."""

    modalities: tuple[str, ...]
    feature_dims: Mapping[str, int] = field(default_factory=dict)
    num_classes: int = 0
    encoders: Mapping[str, nn.Module] | None = None
    heads: Mapping[str, nn.Module] | None = None
    fusion: nn.Module | None = None
    parts: Mapping[str, nn.Module] = field(default_factory=dict)
    seed: int = 0
    world_size: int = 1
    device: torch.device | str = "cpu"
    process_group: Any = None
    dependencies: Mapping[str, str] = field(default_factory=dict)
    epochs: int | None = None

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)

    def component_seed(self, name: str) -> int:
        """The seed of the run's random component ``name`` (:func:`ogmge.seeding.component_seed`)."""
        return component_seed(self.seed, name)

    def generator(self, name: str, device: torch.device | str | None = None) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` (default ``ctx.device``) seeded for component ``name``."""
        gen = torch.Generator(device=torch.device(device if device is not None else self.device))
        return gen.manual_seed(self.component_seed(name))

    def replace(self, **changes: Any) -> BuildContext:
        return dataclasses.replace(self, **changes)


@dataclass
class StepTools:
    """What the loop gives a method that owns the step (``owns_step``), in step order:

    ``forward(batch) -> out`` (the model in training mode, under autocast);
    ``loss(out, labels) -> (total, terms)`` (the method's own ``loss`` plus the
    probe heads'); ``backward(total, terms)`` (scaled under AMP); ``guard(total)
    -> skip_reason`` (unscale, non-finite check, clipping; None: finite);
    ``optimizer_step(skip_reason)``; ``zero_grad()``; ``optimizer`` and
    ``params`` for weight perturbations. ``train_step`` returns the
    ``(out, total, terms, skip_reason)`` of the step the loop should log."""

    forward: Callable[[Mapping], Any]
    loss: Callable[[Any, Tensor], tuple[Tensor, dict]]
    backward: Callable[[Tensor, Mapping], None]
    guard: Callable[[Tensor], str | None]
    optimizer_step: Callable[[str | None], None]
    zero_grad: Callable[[], None]
    optimizer: torch.optim.Optimizer | None = None
    params: Sequence[nn.Parameter] = ()


# ------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[BalancingMethod]] = {}
_ALIASES: dict[str, str] = {}
_entry_points_loaded = False
_loaded_plugins: set[str] = set()


def _check_declarations(cls: type[BalancingMethod]) -> None:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"{cls.__qualname__}: name must be a non-empty identifier-like string, got {name!r}")
    if cls.ddp not in DDP_KINDS:
        raise ValueError(f"method {name}: ddp must be one of {DDP_KINDS}, got {cls.ddp!r}")
    if cls.ddp == "refused" and not cls.ddp_reason:
        raise ValueError(f"method {name}: ddp = 'refused' needs a ddp_reason")
    if cls.fits_on_validation and cls.cross_fit not in CROSS_FITS:
        raise ValueError(f"method {name}: fits_on_validation needs cross_fit in {CROSS_FITS}, got {cls.cross_fit!r}")
    if not cls.fits_on_validation and cls.cross_fit is not None:
        raise ValueError(f"method {name}: cross_fit {cls.cross_fit!r} without fits_on_validation")
    if not isinstance(cls.predictions, tuple) or not cls.predictions:
        raise ValueError(f"method {name}: predictions must be a non-empty tuple, got {cls.predictions!r}")
    alias = cls.alias_of
    if alias is not None and not (isinstance(alias, tuple) and len(alias) == 2
                                  and all(isinstance(a, str) and a for a in alias)):
        raise ValueError(f"method {name}: alias_of must be a (method, prediction) pair, got {alias!r}")
    if cls.min_modalities < 1 or (cls.max_modalities is not None and cls.max_modalities < cls.min_modalities):
        raise ValueError(f"method {name}: bad modality bounds [{cls.min_modalities}, {cls.max_modalities}]")
    seen = set()
    for opt in cls.options:
        if not isinstance(opt, Option):
            raise TypeError(f"method {name}: options must be Option objects, got {opt!r}")
        if opt.name in seen:
            raise ValueError(f"method {name}: option {opt.name!r} declared twice")
        seen.add(opt.name)
    _check_presets(cls, name)


def _check_presets(cls: type[BalancingMethod], name: str) -> None:
    presets = getattr(cls, "dataset_presets", None) or {}
    if not isinstance(presets, Mapping):
        raise TypeError(f"method {name}: dataset_presets must map a dataset to a Preset, got {presets!r}")
    for dataset, preset in presets.items():
        if dataset not in PRESET_DATASETS:
            raise ValueError(f"method {name}: a preset for the unknown dataset {dataset!r} "
                             f"(the paper datasets: {', '.join(PRESET_DATASETS)})")
        if not isinstance(preset, Preset):
            raise TypeError(f"method {name}: the {dataset} preset must be a Preset, got {preset!r}")
        try:
            resolve_options(cls, preset.options)
        except ValueError as exc:
            raise ValueError(f"method {name}: its {dataset} preset is invalid: {exc}") from None
    schedule = getattr(cls, "authors_schedule", None)
    if schedule is not None:
        if not isinstance(schedule, Mapping) or not str(schedule.get("source", "")).strip():
            raise ValueError(f"method {name}: authors_schedule must be a mapping with a source, got {schedule!r}")
        unknown = sorted(set(schedule) - set(SCHEDULE_KEYS))
        if unknown:
            raise ValueError(f"method {name}: authors_schedule has unknown keys {unknown} (known: "
                             f"{', '.join(SCHEDULE_KEYS)})")


def register(cls: type | None = None, *, aliases: Iterable[str] = ()):
    """Class decorator: register a :class:`~ogmge.methods.BalancingMethod` subclass by its
    ``name`` (and ``aliases``, old names that resolve to it). A name already taken is
    an error, so a plug-in cannot shadow a built-in method."""
    from .base import BalancingMethod

    def deco(c: Any) -> Any:
        if not (isinstance(c, type) and issubclass(c, BalancingMethod)):
            raise TypeError(f"register needs a BalancingMethod subclass, got {c!r}")
        _check_declarations(c)
        for key in (c.name, *aliases):
            taken = _REGISTRY.get(key) or (_REGISTRY.get(_ALIASES[key]) if key in _ALIASES else None)
            if taken is not None and taken is not c:
                if qualname(taken) == qualname(c):  # the same module re-imported (e.g. reloaded): replace
                    continue
                raise ValueError(f"method name {key!r} is taken by {qualname(taken)}; {qualname(c)} needs "
                                 "another name")
        _REGISTRY[c.name] = c
        for a in aliases:
            _ALIASES[a] = c.name
        return c

    return deco(cls) if cls is not None else deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()  # importing the module registers its methods
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the built-ins
            import warnings

            warnings.warn(f"ogmge: the method plug-in {ep.name!r} ({ep.value}) failed to load: {exc}",
                          stacklevel=2)


def load_plugins(modules: Iterable[str] = (), *, env: bool = True) -> list[str]:
    """Import plug-in modules (``--plugin MODULE``; with ``env``, also those of
    ``$OGMGE_PLUGINS``), which register their methods; returns the modules imported."""
    wanted = [m.strip() for m in modules if m and m.strip()]
    if env:
        wanted += [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    done = []
    for mod in dict.fromkeys(wanted):
        if mod not in _loaded_plugins:
            try:
                importlib.import_module(mod)
            except ImportError as exc:
                raise ValueError(f"cannot import the method plug-in {mod!r}: {exc}") from None
            _loaded_plugins.add(mod)
        done.append(mod)
    return done


def plugins() -> list[str]:
    """The plug-in modules imported so far (to pass on to worker processes)."""
    return sorted(_loaded_plugins)


def _ensure_loaded() -> None:
    importlib.import_module("ogmge.methods")  # its modules register the built-in methods

    _load_entry_points()
    load_plugins()


_CHAINS: dict[str, type[BalancingMethod]] = {}


def get(name: str) -> type[BalancingMethod]:
    """The method class registered as ``name`` (or an alias of it); ``"a+b"`` is the chain of
    ``a`` and ``b`` (``ogmge.methods.chain``). A ValueError lists the names."""
    _ensure_loaded()
    if isinstance(name, str) and "+" in name:
        if name not in _CHAINS:
            from .chain import compose

            _CHAINS[name] = compose([get(part) for part in name.split("+")])
        return _CHAINS[name]
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(names())} "
                         f"(a plug-in's method needs --plugin MODULE or ${PLUGIN_ENV})")
    return _REGISTRY[key]


def names() -> tuple[str, ...]:
    """Every registered method's name, simplest first (``tie_rank``, then name)."""
    _ensure_loaded()
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].tie_rank, n)))


def is_registered(name: str) -> bool:
    _ensure_loaded()
    if "+" in name:
        return all(is_registered(part) for part in name.split("+"))
    return _ALIASES.get(name, name) in _REGISTRY


def qualname(cls: type) -> str:
    """``module:QualName`` of a class (what a run's config records)."""
    return f"{cls.__module__}:{cls.__qualname__}"


_KNOWN: dict[str, type[BalancingMethod]] = {}


def remember(cls: type[BalancingMethod]) -> None:
    """Let :func:`resolve_qualname` find ``cls`` in this process without importing it (a
    class handed to the trainer, e.g. one defined inside a function)."""
    _KNOWN[qualname(cls)] = cls


def resolve_qualname(text: str) -> type[BalancingMethod]:
    """The class named by ``module:QualName`` (imports the module)."""
    from .base import BalancingMethod

    if text in _KNOWN:
        return _KNOWN[text]
    module, _, qual = text.partition(":")
    if not module or not qual:
        raise ValueError(f"a method class is named 'module:QualName', got {text!r}")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"cannot import {module!r} for the method class {text!r}: {exc}") from None
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{module!r} has no {qual!r} (the method class {text!r})")
    if not (isinstance(obj, type) and issubclass(obj, BalancingMethod)):
        raise ValueError(f"{text!r} is not a BalancingMethod subclass")
    return obj


def describe(cls: type[BalancingMethod], *, verbose: bool = True) -> str:
    """Plain text about a method (``ogmge methods NAME``): paper, requirements, options."""
    lines = [f"{cls.name}: {first_line(cls)}"]
    if cls.paper:
        lines.append(f"  paper: {cls.paper}")
    if not verbose:
        return "\n".join(lines)
    req = [f"predictions {', '.join(cls.predictions)}",
           f"modalities >= {cls.min_modalities}" + (f", <= {cls.max_modalities}" if cls.max_modalities else ""),
           f"DDP {cls.ddp}" + (f" ({cls.ddp_reason})" if cls.ddp_reason else "")]
    if cls.needs_heads:
        req.append("per-modality heads")
    if cls.fits_on_validation:
        req.append(f"fits on validation (cross-fit: {cls.cross_fit})")
    if cls.owns_step:
        req.append("owns the optimizer step")
    if cls.depends_on:
        req.append(f"depends on {', '.join(cls.depends_on)} runs")
    lines.append("  " + "; ".join(req))
    if cls.options:
        lines.append("  options:")
        for o in cls.options:
            extra = f" {o.range_text()}"
            src = f"; default from {o.source}" if o.source else ""
            space = f"; tuned over {o.space}" if o.space else ""
            flag = f"; paper flag --{o.paper_key.replace('_', '-')}" if o.paper_key else ""
            lines.append(f"    {o.name} ({o.type.__name__}, default {o.default!r}){extra}: {o.help}{src}{space}{flag}")
    else:
        lines.append("  options: none")
    presets = getattr(cls, "dataset_presets", None) or {}
    if presets:
        lines.append("  dataset presets (used on that dataset unless the option is set):")
        for dataset, preset in presets.items():
            lines.append(f"    {dataset}: {preset.text()}")
    schedule = getattr(cls, "authors_schedule", None)
    if schedule:
        lines.append(f"  authors' schedule (informative; runs use the shared one): {schedule_text(schedule)}")
    return "\n".join(lines)


def first_line(cls: type[BalancingMethod]) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def options_table(cls: type[BalancingMethod]) -> str:
    """The Markdown table of a method's options (docs/methods.md is checked against it)."""
    rows = ["| option | type | default | range | tuning space | default's source | meaning |",
            "|---|---|---|---|---|---|---|"]
    for o in cls.options:
        rows.append(f"| `{o.name}` | {o.type.__name__} | `{o.default!r}` | {o.range_text()} | "
                    f"{o.space if o.space else '—'} | {o.source or '—'} | {o.help} |")
    return "\n".join(rows)


__all__ = [
    "CROSS_FITS",
    "DDP_KINDS",
    "ENTRY_POINT_GROUP",
    "PLUGIN_ENV",
    "BuildContext",
    "PRESET_DATASETS",
    "Option",
    "Preset",
    "Space",
    "StepTools",
    "dataset_preset",
    "describe",
    "get",
    "is_registered",
    "load_plugins",
    "names",
    "options_table",
    "plugins",
    "qualname",
    "register",
    "resolve_options",
    "resolve_qualname",
    "schedule_text",
]
