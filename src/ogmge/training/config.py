"""The training configuration: one validated dataclass, YAML in and out.

YAML keys are the CLI flag names with ``_`` for ``-`` (DESIGN §5):
``--modulation-starts`` <-> ``modulation_starts``. ``cli_flag`` and
``yaml_key`` convert between the two. The settings stay flat; each belongs to one
part (data, model, method, optimisation, run: ``config_parts.PARTS``, the views
``config.parts``), and ``differences`` compares only the settings a run reads, by part.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ogmge import methods as registry
from ogmge.data.paper import DATASETS as _PAPER_READERS
from ogmge.data.paper import SPLITS  # noqa: F401  (re-exported: the splits a config may name)
from ogmge.models.estimators import ESTIMATORS, EstimatorName
from ogmge.models.fusion import FUSIONS as _FUSION_HEADS
from ogmge.models.fusion import FusionName
from ogmge.modulation import MODES, SELECTIONS, CoefficientRule, Mode, Selection
from ogmge.modulation.scores import COEFFICIENT_RULES as COEFFICIENTS
from ogmge.validation import InvalidType, check_choice, check_number

from .config_parts import Differences, Parts, check_parts, parts_of, used_settings
from .stopping import CHOICES as STOPPING_RULES

# Choice lists come from the modules that own them; only the optimisers are the config's own.
PAPER_DATASETS = (*_PAPER_READERS, "clips")
DATASETS = ("builtin", "byo", *PAPER_DATASETS)
FUSIONS = tuple(_FUSION_HEADS)
OPTIMIZERS = ("auto", "sgd", "adam", "adamw")
#: ``optimizer: auto`` / ``patience: auto`` per model builder (``factory.default_builder``):
#: the paper's encoders keep the paper's SGD and fixed epochs; generic encoders (built-in
#: and bring-your-own data) and custom models get Adam and early stopping (docs/training.md).
AUTO_OPTIMIZER = {"paper": "sgd"}
AUTO_PATIENCE = {"paper": None}
GENERIC_OPTIMIZER = "adam"
GENERIC_PATIENCE = 10
#: Registered methods at import (``ogmge.methods.names()`` is the live list, plug-ins included)
#: and the paper flags each means; kept for older callers.
METHODS = registry.names()
METHOD_MODULATION = {n: (registry.get(n).paper_flags["modulation"], registry.get(n).paper_flags["opm"])
                     for n in METHODS}
#: The paper's flat settings a method's options may be set by (DESIGN §5): ``--alpha``,
#: ``--modulation-starts``/``-ends``, ``--modulate-params``, ``--coefficient``. They stay
#: flat keys (the OGM-GE monitor of every run reads them too); ``Option.paper_key`` maps them.
PAPER_KEYS = ("alpha", "modulation_starts", "modulation_ends", "modulate_params", "coefficient")
#: Keys every saved run config has carried: a mapping holding all of them but no ``method_preset``
#: is a run saved before method presets existed, which resumes without them (``from_dict``).
PRESET_MARKERS = frozenset({"seed", "device", "trace_every", "progress", "out", "tensorboard"})
#: Deprecated spelling, translated once by ``TrainConfig.from_dict``.
DEPRECATION = ("flat method keys ({keys}) are deprecated: write method: {{name: {name}, KEY: VALUE}} "
               "(or --method-opt KEY=VALUE)")


#: Keys every saved run config has carried since OPM had settings: a mapping holding all of them
#: is a run's saved config, not a user's YAML (``legacy_behaviour``).
SAVED_CONFIG_MARKERS = frozenset({"seed", "device", "trace_every", "mdrop_p", "mmpareto_scale", "anchored_weight"})
#: What a saved config that predates a setting ran with: ``{new key: value then}`` (the
#: per-modality OPM rescale and OPM from the first epoch, before OPM followed its paper).
LEGACY_DEFAULTS = {"opm_rescale": "per_modality", "opm_starts": 0, "gblend_estimate": "online"}
#: A legacy default applies only to a saved config that has its method's older settings.
LEGACY_NEEDS = {"opm_rescale": "opm_q_base", "opm_starts": "opm_q_base", "gblend_estimate": "gblend_super_epoch"}


def legacy_behaviour(values: dict[str, Any]) -> dict[str, Any]:
    """The settings a run's saved config lacks because it predates them, with the behaviour it
    ran with (``LEGACY_DEFAULTS``); empty for a user's YAML or a current saved config."""
    if not SAVED_CONFIG_MARKERS <= set(values):
        return {}
    return {k: v for k, v in LEGACY_DEFAULTS.items() if k not in values and LEGACY_NEEDS[k] in values}


def legacy_note(values: dict[str, Any]) -> str | None:
    """One line saying which earlier behaviour a run's saved config resumes with (None: current)."""
    members = set(_saved_method(values).split("+"))
    owner = _legacy_keys()  # a legacy default matters to a run of the method that has its older key
    legacy = {k: v for k, v in legacy_behaviour(values).items() if owner[LEGACY_NEEDS[k]][0] in members}
    if not legacy:
        return None
    settings = ", ".join(f"{k}={v}" for k, v in legacy.items())
    return (f"this run predates these settings and keeps the behaviour it was trained with: {settings} "
            "(docs/methods.md: OPM before it followed its paper)")


#: The section of a config YAML that is not a run setting but the comparison the file is
#: for (``comparison_section``; the demo preset's methods and seeds).
COMPARISON_KEY = "compare"

RETIRED_IMBALANCE = (
    "'imbalance' was a setting of the built-in data version 1, retired in version 2 (the data this "
    "installation generates): a run made on version 1 cannot be evaluated or resumed here, retrain it; "
    "for new runs choose a regime instead, e.g. dataset_options: {regime: paper} or {regime: weak_useless} "
    "(presets builtin_paper, builtin_weak_useless, builtin_paper3; docs/data.md)"
)

#: Settings that may change between an interrupted run and its resumption
#: without changing the result (where it runs, how it reports, how long).
RESUMABLE_CHANGES = frozenset(
    {"epochs", "device", "out", "tensorboard", "progress", "num_workers", "data_root", "split_file", "data", "name",
     "method_class"}
)


def cli_flag(key: str) -> str:
    """``modulation_starts`` -> ``--modulation-starts``."""
    return "--" + key.replace("_", "-")


def yaml_key(flag: str) -> str:
    """``--modulation-starts`` -> ``modulation_starts``."""
    return flag.lstrip("-").replace("-", "_")


@dataclass
class TrainConfig:
    """Every setting of a training run (defaults: the paper's CREMA-D run).

    Data: ``dataset`` is ``builtin``, ``byo`` (with ``data``: a .npz file)
    or a paper dataset (with ``data_root`` and optionally ``split_file``);
    ``modalities`` trains a subset; ``val_fraction`` of train (seeded,
    stratified) selects the model, 0 keeps the last epoch.

    >>> cfg = TrainConfig.load("builtin_cpu").replace(epochs=2, modulation="OGM")
    >>> cfg.dataset, cfg.modulation, cfg.alpha
    ('builtin', 'OGM', 0.8)
    >>> TrainConfig(alpha=0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be ...
    """

    # data
    dataset: str = "builtin"
    data_root: str | None = None
    split_file: str | None = None
    data: str | None = None
    modalities: list[str] | None = None
    val_fraction: float = 0.1
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: Which validation samples select the epoch (``{}``: all); ``{half: A, seed, holdout}``
    #: or ``{folds: K, fold: k, seed}`` (``ogmge.training.selection``; tuned comparisons).
    val_selection: dict[str, Any] = field(default_factory=dict)
    # model
    fusion: FusionName = "concat"
    estimator: EstimatorName | None = None
    width: int = 64
    model_options: dict[str, Any] = field(default_factory=dict)
    opm: bool = False
    # balancing method: ``{name: NAME, OPTION: VALUE, ...}`` (a bare name is accepted; None:
    # derived from ``modulation`` and ``opm``, the paper's flags); options: ``ogmge methods NAME``
    method: dict[str, Any] | str | None = None
    #: ``module:QualName`` of the method's class (recorded by the trainer; imports a plug-in on resume)
    method_class: str | None = None
    #: The prediction rule (``fused``, ``ensemble``, ``blend``; None: the method's default)
    prediction: str | None = None
    # modulation
    modulation: Mode = "OGM_GE"
    alpha: float = 0.8
    modulation_starts: int = 0
    modulation_ends: int | None = 50
    modulate_params: Selection | None = None
    coefficient: CoefficientRule = "paper"
    # optimisation
    epochs: int = 100
    batch_size: int = 64
    eval_batch_size: int | None = None
    lr: float = 1e-3
    #: ``auto``: SGD for the paper's encoders, Adam for generic encoders (``resolved_optimizer``)
    optimizer: str = "auto"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 70
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    amp: bool = False
    #: Stop when validation accuracy has not improved for this many epochs (None: never;
    #: ``auto``: 10 for generic encoders, never for the paper's; see ``resolved_patience``).
    patience: int | str | None = "auto"
    #: The selection/stopping rule (``ogmge.training.stopping``): ``auto`` (``raw`` for the
    #: paper's encoders, ``smoothed`` otherwise), ``smoothed``, ``raw``, or a versioned name
    #: (``smoothed_v1``, ``raw_v1``); a run records the versioned name it resolved to.
    stopping: str = "auto"
    # run
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    name: str | None = None
    tensorboard: bool = False
    num_workers: int = 0
    progress: bool = True
    trace_every: int = 1
    #: Log test metrics every epoch too (off: test is evaluated once, at the end, on the
    #: selected checkpoint; the test split never selects anything, DESIGN §3).
    eval_test_every_epoch: bool = False
    #: Runs the method builds on (its ``depends_on``), ``{key: run directory}``: ``compare`` sets
    #: ``alone/<modality>`` to the modality-alone run of the same seed; a user may name their own.
    dependencies: dict[str, str] = field(default_factory=dict)
    #: The method's dataset preset this run uses (``{method, dataset, options, source}``; ``{}``:
    #: none), written by the config itself: on a paper dataset an option the config does not set
    #: takes the value the method declares for that dataset (``dataset_presets``). ``null`` turns
    #: presets off (the options' own defaults everywhere).
    method_preset: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Raise ValueError/TypeError naming the field and its value."""
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("estimator", self.estimator, ESTIMATORS, allow_none=True)
        check_choice("modulation", self.modulation, MODES)
        check_choice("modulate_params", self.modulate_params, SELECTIONS, allow_none=True)
        check_choice("coefficient", self.coefficient, COEFFICIENTS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("data_root", "split_file", "data", "out", "name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise InvalidType(f"{name} must be a path string, got {value!r}")
            if isinstance(value, Path):
                setattr(self, name, str(value))
        if self.modalities is not None:
            if isinstance(self.modalities, str):
                self.modalities = [m.strip() for m in self.modalities.split(",") if m.strip()]
            if not isinstance(self.modalities, (list, tuple)) or not self.modalities or not all(
                isinstance(m, str) and m for m in self.modalities
            ):
                raise ValueError(f"modalities must be a non-empty list of names, got {self.modalities!r}")
            if len(set(self.modalities)) != len(self.modalities):
                raise ValueError(f"modalities must not repeat a name, got {self.modalities!r}")
            self.modalities = list(self.modalities)
        check_number("val_fraction", self.val_fraction, lo=0, hi=1, hi_open=True)
        # lazy: selection imports the data module, which imports this one
        from .selection import check_selection

        self.val_selection = check_selection(self.val_selection)
        check_number("width", self.width, integer=True, lo=1)
        check_number("alpha", self.alpha, lo=0, lo_open=True)
        check_number("modulation_starts", self.modulation_starts, integer=True, lo=0)
        if check_number("modulation_ends", self.modulation_ends, integer=True, lo=0, allow_none=True) is not None:
            if self.modulation_ends is not None and self.modulation_ends < self.modulation_starts:
                raise ValueError(
                    f"modulation_ends ({self.modulation_ends}) must not be before "
                    f"modulation_starts ({self.modulation_starts})"
                )
        check_number("epochs", self.epochs, integer=True, lo=1)
        check_number("batch_size", self.batch_size, integer=True, lo=1)
        check_number("eval_batch_size", self.eval_batch_size, integer=True, lo=1, allow_none=True)
        check_number("lr", self.lr, lo=0, lo_open=True)
        check_number("momentum", self.momentum, lo=0, hi=1)
        check_number("weight_decay", self.weight_decay, lo=0)
        check_number("lr_step", self.lr_step, integer=True, lo=1)
        check_number("lr_gamma", self.lr_gamma, lo=0, lo_open=True)
        check_number("grad_clip", self.grad_clip, lo=0, lo_open=True, allow_none=True)
        if self.patience != "auto":
            if isinstance(self.patience, str):
                raise ValueError(f"patience must be an integer >= 1, 'auto' or null, got {self.patience!r}")
            check_number("patience", self.patience, integer=True, lo=1, allow_none=True)
        check_choice("stopping", self.stopping, STOPPING_RULES)
        check_number("seed", self.seed, integer=True, lo=0)
        check_number("num_workers", self.num_workers, integer=True, lo=0)
        check_number("trace_every", self.trace_every, integer=True, lo=1)
        for name in ("amp", "opm", "tensorboard", "progress", "eval_test_every_epoch"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidType(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        for name in ("dataset_options", "model_options"):
            if not isinstance(getattr(self, name), dict):
                raise InvalidType(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if not isinstance(self.dependencies, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.dependencies.items()):
            raise InvalidType(f"dependencies must map names to run directories, got {self.dependencies!r}")
        if self.dataset == "byo" and not self.data:
            raise ValueError("dataset 'byo' needs data (--data FILE.npz)")
        if self.data and self.dataset not in ("byo",):
            raise ValueError(f"data ({self.data!r}) is bring-your-own data; it needs dataset 'byo', got {self.dataset!r}")
        if self.method_class is not None and not isinstance(self.method_class, str):
            raise InvalidType(f"method_class must be 'module:QualName', got {self.method_class!r}")
        if self.method_preset is not None and not isinstance(self.method_preset, dict):
            raise InvalidType(f"method_preset must be a mapping (written by the run) or null (presets off), "
                              f"got {self.method_preset!r}")
        self._check_method()
        return self

    # ------------------------------------------------------------ the method
    def _check_method(self) -> None:
        """Normalise ``method`` to ``{name, **options}`` (every option of the method that
        is not a paper flag, defaults filled in), validate it, and make the paper's flags
        agree with it: a flag left at its default follows the method, one set to
        something else contradicts it (an error naming both)."""
        if self.method is None:
            cls = self.method_cls
            preset = registry.registry.dataset_preset(cls, self.dataset) if self.method_preset is not None else None
            flags = {o.name for o in cls.options if o.paper_key}
            if preset is not None and set(preset.options) - flags:  # the preset needs the method mapping
                self.method = {"name": cls.name}
            else:
                self._apply_preset(cls, {}, set())
        if self.method is not None:
            spec = {"name": self.method} if isinstance(self.method, str) else self.method
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise InvalidType(f"method must be a name or a mapping with a name, got {self.method!r}")
            spec = dict(spec)
            cls = _method_class(spec["name"], self.method_class)
            paper = {o.name: o.paper_key for o in cls.options if o.paper_key}
            flagged = set(spec) & set(paper)
            for opt, key in paper.items():  # the paper's flags hold these (DESIGN §5)
                if opt in spec:
                    setattr(self, key, spec.pop(opt))
            given = {k: v for k, v in spec.items() if k != "name"}
            known = {o.name for o in cls.options if not o.paper_key}
            unknown = sorted(set(given) - known)
            if unknown:
                raise ValueError(f"method {cls.name} has no option {', '.join(map(repr, unknown))} "
                                 f"(its options: {', '.join(o.name for o in cls.options) or 'none'})")
            given = self._apply_preset(cls, given, flagged)
            opts = cls.resolve_options({**given, **self._paper_options(cls)})
            self.method = {"name": cls.name, **{k: v for k, v in opts.items() if k in known}}
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, wanted in cls.paper_flags.items():
                value = getattr(self, name)
                if value != wanted and value != defaults[name]:
                    raise ValueError(
                        f"method {cls.name!r} means {name}={wanted!r}, but {name} is {value!r}; "
                        f"give one of method or {name} (method: null derives the method from modulation/opm)"
                    )
                setattr(self, name, wanted)
        cls.resolve_options(self.method_options)  # the paper flags' values, through the method's checks
        if self.prediction is not None and self.prediction not in cls.predictions:
            raise ValueError(f"method {cls.name} supports the predictions {list(cls.predictions)}, "
                             f"got prediction {self.prediction!r}: give one of those (or none: "
                             f"{cls.predictions[0]!r}, the method's default)")

    def _apply_preset(self, cls, given: dict[str, Any], flagged: set[str]) -> dict[str, Any]:
        """``given`` (the method mapping's options) with the method's preset for this dataset in
        the options the config does not set, the paper's flags likewise; records it in
        ``method_preset``. Not set: absent from the mapping, or a paper flag at its default
        (``flagged``: options the mapping gave for a flag); a value an earlier ``method_preset``
        put there (the dataset or the method may have changed since) counts as not set too."""
        if self.method_preset is None:  # presets off
            return given
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        old = self.method_preset or {}
        old_opts = old.get("options") if isinstance(old.get("options"), dict) else {}
        given = dict(given)
        if old_opts:
            old_cls = cls if old.get("method") == cls.name else _registered(old.get("method"))
            old_flags = {o.name: o.paper_key for o in (old_cls.options if old_cls else ()) if o.paper_key}
            for opt, value in old_opts.items():
                key = old_flags.get(opt)
                if key is not None:
                    if getattr(self, key) == value and opt not in flagged:
                        setattr(self, key, defaults[key])
                elif old.get("method") == cls.name and opt in given and given[opt] == value:
                    del given[opt]
        preset = registry.registry.dataset_preset(cls, self.dataset)
        applied: dict[str, Any] = {}
        if preset is not None:
            flags = {o.name: o.paper_key for o in cls.options if o.paper_key}
            for opt, value in preset.options.items():
                key = flags.get(opt)
                if key is None:
                    if opt not in given:
                        given[opt] = applied[opt] = value
                elif opt not in flagged and getattr(self, key) == defaults[key]:
                    setattr(self, key, value)
                    applied[opt] = value
        self.method_preset = ({"method": cls.name, "dataset": self.dataset, "options": applied,
                               "source": preset.source} if preset is not None and applied else {})
        return given

    def _paper_options(self, cls) -> dict[str, Any]:
        """The options the paper's flags set (a flag at None means the option's default)."""
        out = {}
        for o in cls.options:
            if o.paper_key:
                value = getattr(self, o.paper_key)
                if value is not None or o.allow_none:
                    out[o.name] = value
        return out

    @property
    def method_cls(self) -> type[registry.BalancingMethod]:
        """The method's class (``ogmge.methods.get``; a plug-in's through ``method_class``)."""
        if self.method is None:
            return registry.get(_derived_method(self.modulation, self.opm))
        name = self.method if isinstance(self.method, str) else self.method["name"]
        return _method_class(name, self.method_class)

    @property
    def method_options(self) -> dict[str, Any]:
        """The options the method is built with: the method mapping's and the paper flags'."""
        cls = self.method_cls
        given = {} if not isinstance(self.method, dict) else {k: v for k, v in self.method.items() if k != "name"}
        return {**given, **self._paper_options(cls)}

    @property
    def resolved_prediction(self) -> str:
        """The prediction rule: ``prediction``, or the method's default."""
        return self.prediction or self.method_cls.predictions[0]

    @property
    def resolved_method(self) -> str:
        """The balancing method's name, also for configs that only set the paper's flags
        (``modulation`` OGM/OGM_GE with ``opm`` gives ``ogm+opm``/``ogm_ge+opm``)."""
        if self.method is None:
            return _derived_method(self.modulation, self.opm)
        return self.method if isinstance(self.method, str) else self.method["name"]

    def __getattr__(self, name: str) -> Any:
        """Deprecated flat method keys as attributes (``cfg.gblend_w_min``): the option's value
        when the run's method has it, else its default."""
        if name.startswith("__") or name not in _legacy_keys():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        method_name, opt = _legacy_keys()[name]
        if "method" in self.__dict__ and method_name in self.resolved_method.split("+"):
            key = _option_key(self.method_cls, method_name, opt.name)
            return self.method_options.get(key, opt.default) if key else opt.default
        return opt.default

    def resolved_optimizer(self, builder: str) -> str:
        """The optimiser ``optimizer: auto`` means for a model built by ``builder``."""
        if self.optimizer != "auto":
            return self.optimizer
        return AUTO_OPTIMIZER.get(builder, GENERIC_OPTIMIZER)

    def resolved_patience(self, builder: str) -> int | None:
        """The early-stopping patience ``patience: auto`` means for ``builder`` (None: off;
        always off without a validation split)."""
        if self.val_fraction == 0:
            return None
        if self.patience == "auto":
            return AUTO_PATIENCE.get(builder, GENERIC_PATIENCE)
        return None if self.patience is None else int(self.patience)

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        if not isinstance(values, dict):
            raise TypeError(f"a configuration must be a mapping of settings, got {type(values).__name__}")
        if "imbalance" in values:  # built-in data v1's knob (retired in v2); old runs' configs carry it
            values = dict(values)
            if values.pop("imbalance") is not None or values.get("dataset", "builtin") == "builtin":
                raise ValueError(RETIRED_IMBALANCE)
        legacy = legacy_behaviour(values)
        if legacy:  # a run made before these settings existed resumes with the behaviour it started with
            values = {**values, **legacy}
        if PRESET_MARKERS <= set(values) and "method_preset" not in values:
            values = {**values, "method_preset": None}  # saved before presets: resumes exactly as it ran
        values = _translate_legacy(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            hint = [k for k in unknown if "-" in k]
            extra = f" (YAML keys use '_' for '-', e.g. {yaml_key(hint[0])!r})" if hint else ""
            raise ValueError(f"unknown settings {unknown}{extra}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        values = self.to_dict()
        values.update(changes)
        return TrainConfig.from_dict(values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        from ogmge.io_utils import atomic_write_text

        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path_or_preset: str | Path) -> TrainConfig:
        """Load a YAML file, or a shipped preset by name (see ``list_presets``); its
        ``compare`` section, not a run setting, is set aside (``comparison_section``)."""
        values, where = _read_config_values(path_or_preset)
        values.pop(COMPARISON_KEY, None)
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None

    @property
    def parts(self) -> Parts:
        """The settings by part, read-only: ``config.parts.data``, ``.model``, ``.method``,
        ``.optimisation``, ``.run`` (``config_parts.PARTS`` says which setting is where)."""
        return parts_of(self)

    def differences(self, other: TrainConfig, *, ignore=RESUMABLE_CHANGES, unused: bool = False) -> Differences:
        """``{setting: (mine, theirs)}`` for every setting that differs among those the runs
        read (``config_parts.used_settings``: e.g. ``split_file`` is not compared for
        bring-your-own data, ``estimator: null`` equals the fusion's own estimator; ``unused``:
        compare every setting as written). The method's options are compared as one ``method``
        setting (a run carries only its own). ``.by_part()`` groups them, ``.describe()`` words
        them ``part.setting: mine ..., theirs ...``."""
        a, b = self.to_dict(), other.to_dict()
        ignore = {*ignore, "method_preset"}  # a record of where values came from: the values are compared
        ua, ub = (a, b) if unused else (used_settings(self), used_settings(other))
        out = Differences()
        for k in a:
            if k in ignore or (k not in ua and k not in ub):
                continue
            if ua.get(k, a[k]) != ub.get(k, b.get(k)):
                out[k] = (a[k], b.get(k))
        return out


check_parts([f.name for f in dataclasses.fields(TrainConfig)])
_dataclass_init = TrainConfig.__init__


def _init_with_legacy_keys(self, *args, **kwargs) -> None:
    """``TrainConfig(...)``, also with the deprecated flat method keys (``mdrop_p=0.3``),
    translated as ``from_dict`` does."""
    if any(k in _legacy_keys() for k in kwargs):
        kwargs = _translate_legacy(kwargs)
    _dataclass_init(self, *args, **kwargs)


_init_with_legacy_keys.__signature__ = inspect.signature(_dataclass_init)  # type: ignore[attr-defined]
_init_with_legacy_keys.__doc__ = _dataclass_init.__doc__
TrainConfig.__init__ = _init_with_legacy_keys  # type: ignore[method-assign]


def _derived_method(modulation: str, opm: bool) -> str:
    """The method the paper's flags mean (``method: null``)."""
    base = {"Normal": "normal", "OGM": "ogm", "OGM_GE": "ogm_ge"}[modulation]
    if opm:
        return "opm" if base == "normal" else f"{base}+opm"
    return base


def _saved_method(values: dict[str, Any]) -> str:
    """The method a config mapping names (``method``, or the one its paper flags mean)."""
    method = values.get("method")
    if method is None:
        return _derived_method(values.get("modulation", "OGM_GE"), bool(values.get("opm", False)))
    return str(method if isinstance(method, str) else (method or {}).get("name"))


def _method_class(name: str, qualname: str | None):
    """The registered class of ``name``; an unregistered one through its recorded ``module:QualName``."""
    if not registry.registry.is_registered(name) and qualname and "+" not in name:
        cls = registry.resolve_qualname(qualname)  # importing the plug-in registers it (or not: use the class)
        if cls.name != name:
            raise ValueError(f"method_class {qualname!r} is the method {cls.name!r}, not {name!r}")
        return cls
    return registry.get(name)


def _registered(name: Any):
    """The registered method class ``name`` (None: unknown here, e.g. a plug-in not loaded)."""
    try:
        return registry.get(name) if isinstance(name, str) and name else None
    except ValueError:
        return None


def method_notes(cfg: TrainConfig) -> list[str]:
    """What a run on a paper dataset says at its start: the dataset preset it uses, if any, and
    that the schedule is the shared one (with the authors', where the method declares it)."""
    lines = []
    rec = cfg.method_preset or {}
    if rec.get("options"):
        opts = ", ".join(f"{k}={v!r}" for k, v in rec["options"].items())
        lines.append(f"method preset: {rec.get('method')} on {rec.get('dataset')} uses {opts}, the authors' "
                     f"setting there ({rec.get('source')}); set the option to override it")
    if cfg.dataset in registry.registry.PRESET_DATASETS:
        cls = cfg.method_cls
        members = getattr(cls, "member_classes", ()) or (cls,)
        used = [(c.name, c.authors_schedule) for c in members if c.authors_schedule is not None]
        text = "; ".join((f"{n}: " if len(members) > 1 else "") + registry.registry.schedule_text(s)
                         for n, s in used)
        lines.append("schedule: the shared one (lr, optimizer, epochs from the config); "
                     + (f"the authors used {text} for this method" if used
                        else "this method declares no authors' schedule"))
    return lines


def _option_key(cls, member: str, option: str) -> str | None:
    """The name under which method ``cls`` (maybe a chain ``a+b``) has ``member``'s ``option``."""
    key_of = getattr(cls, "option_key", None)
    return key_of(member, option) if key_of is not None else option


def _legacy_keys() -> dict[str, tuple[str, Any]]:
    """``{flat key: (method name, Option)}`` of the deprecated flat keys (``Option.legacy_key``)."""
    out = {}
    for name in registry.names():
        for opt in registry.get(name).options:
            if opt.legacy_key:
                out[opt.legacy_key] = (name, opt)
    return out


def _translate_legacy(values: dict[str, Any]) -> dict[str, Any]:
    """The one translation of configs written before the registry: flat prefixed keys
    (``gblend_w_min``, ``mdrop_p``, ``opm_q_base``, ...) become the method's options when
    the run's method has them; elsewhere they were unused and are dropped."""
    legacy = _legacy_keys()
    found = {k: values[k] for k in values if k in legacy}
    if not found:
        return values
    for key, value in found.items():  # checked even where unused: a typo'd value is an error
        owner, opt = legacy[key]
        try:
            found[key] = opt.validate(value, owner=owner)
        except ValueError as exc:
            raise ValueError(f"{key} ({exc})") from None
    values = {k: v for k, v in values.items() if k not in found}
    method = values.get("method")
    name = _saved_method(values)
    members = set(name.split("+"))
    mine = {legacy[k][1].name: v for k, v in found.items() if legacy[k][0] in members}
    changed = [k for k, v in found.items() if legacy[k][0] in members and v != legacy[k][1].default]
    if changed:
        warnings.warn(DEPRECATION.format(keys=", ".join(sorted(changed)), name=name), DeprecationWarning,
                      stacklevel=3)
    if mine and (changed or method is not None):
        spec = {"name": name} if method is None or isinstance(method, str) else dict(method)
        cls = registry.get(name)
        for key, value in found.items():
            owner, opt = legacy[key]
            target = _option_key(cls, owner, opt.name) if owner in members else None
            if target is None:
                continue
            if value != opt.default:
                spec[target] = value  # given explicitly (or an old run's setting): it wins
            else:
                spec.setdefault(target, value)
        values["method"] = spec
    return values


def list_presets() -> list[str]:
    """Names of the YAML presets shipped in ``ogmge/configs``."""
    root = resources.files("ogmge") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def comparison_section(path_or_preset: str | Path) -> dict[str, Any]:
    """The ``compare`` section of a config YAML or preset: the comparison it is for,
    ``{methods: [NAME, ...], seeds: [N, ...]}`` (each optional; ``{}`` without one). The demo
    preset holds ``ogmge demo``'s methods and seeds there; ``TrainConfig.load`` sets it aside."""
    values, where = _read_config_values(path_or_preset)
    section = values.get(COMPARISON_KEY) or {}
    if not isinstance(section, dict):
        raise InvalidType(f"{where}: {COMPARISON_KEY} must be a mapping {{methods: [...], seeds: [...]}}, "
                          f"got {section!r}")
    unknown = sorted(set(section) - {"methods", "seeds"})
    if unknown:
        raise ValueError(f"{where}: {COMPARISON_KEY} has no setting {unknown} (it takes methods and seeds)")
    methods, seeds = section.get("methods"), section.get("seeds")
    if methods is not None and (not isinstance(methods, list) or not methods
                                or not all(isinstance(m, str) and m for m in methods)):
        raise ValueError(f"{where}: {COMPARISON_KEY}.methods must be a non-empty list of method names, "
                         f"got {methods!r}")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in seeds)):
        raise ValueError(f"{where}: {COMPARISON_KEY}.seeds must be a non-empty list of integers >= 0, "
                         f"got {seeds!r}")
    return dict(section)


def _read_config_values(path_or_preset: str | Path) -> tuple[dict[str, Any], str]:
    """The mapping a config YAML or preset holds, and where it came from (for messages)."""
    text, where = _read_config_text(path_or_preset)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise TypeError(f"{where}: a configuration must be a mapping of settings, got {type(values).__name__}")
    return values, where


def _read_config_text(path_or_preset: str | Path) -> tuple[str, str]:
    path = Path(path_or_preset)
    if path.is_file():
        return path.read_text(), str(path)
    name = str(path_or_preset)
    name = name[:-5] if name.endswith(".yaml") else name
    preset = resources.files("ogmge") / "configs" / f"{name}.yaml"
    if "/" not in name and preset.is_file():
        return preset.read_text(), f"preset {name!r}"
    raise FileNotFoundError(
        f"config {str(path_or_preset)!r} is neither a file nor a shipped preset; presets: {', '.join(list_presets())}"
    )
