"""The training configuration: one validated dataclass, YAML in and out.

YAML keys are the CLI flag names with ``_`` for ``-`` (DESIGN §5):
``--modulation-starts`` <-> ``modulation_starts``. ``cli_flag`` and
``yaml_key`` convert between the two.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ogmge.data.paper import DATASETS as _PAPER_READERS
from ogmge.data.paper import SPLITS  # noqa: F401  (re-exported: the splits a config may name)
from ogmge.models.estimators import ESTIMATORS, EstimatorName
from ogmge.models.fusion import FUSIONS as _FUSION_HEADS
from ogmge.models.fusion import FusionName
from ogmge.modulation import MODES, SELECTIONS, CoefficientRule, Mode, Selection
from ogmge.modulation.opm import OPM_RATIOS, OPM_RESCALES
from ogmge.modulation.scores import COEFFICIENT_RULES as COEFFICIENTS
from ogmge.validation import InvalidType, check_choice, check_number

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
#: Balancing methods by name (``--method``). ``normal``/``ogm``/``ogm_ge``/``opm`` are the
#: paper's settings and map onto ``modulation``/``opm`` (see ``METHOD_MODULATION``).
METHODS = ("normal", "ogm", "ogm_ge", "opm", "gblend", "mdrop", "mmpareto", "uni_ensemble", "anchored", "pmr",
           "mmcosine", "agm")
#: What each method sets ``(modulation, opm)`` to; methods other than the paper's keep
#: OGM-GE in measure-only mode (``Normal``) so every run traces scores, ratios and k.
METHOD_MODULATION = {
    "normal": ("Normal", False),
    "ogm": ("OGM", False),
    "ogm_ge": ("OGM_GE", False),
    "opm": ("Normal", True),
}

#: Keys every saved run config has carried since OPM had settings: a mapping holding all of them
#: is a run's saved config, not a user's YAML (``legacy_behaviour``).
SAVED_CONFIG_MARKERS = frozenset({"opm_q_base", "opm_lam", "opm_p_exe", "seed", "device", "trace_every"})
#: What a saved config that predates a setting ran with: ``{new key: value then}`` (the
#: per-modality OPM rescale and OPM from the first epoch, before OPM followed its paper).
LEGACY_DEFAULTS = {"opm_rescale": "per_modality", "opm_starts": 0}


def legacy_behaviour(values: dict[str, Any]) -> dict[str, Any]:
    """The settings a run's saved config lacks because it predates them, with the behaviour it
    ran with (``LEGACY_DEFAULTS``); empty for a user's YAML or a current saved config."""
    if not SAVED_CONFIG_MARKERS <= set(values):
        return {}
    return {k: v for k, v in LEGACY_DEFAULTS.items() if k not in values}


def legacy_note(values: dict[str, Any]) -> str | None:
    """One line saying which earlier behaviour a run's saved config resumes with (None: current)."""
    legacy = legacy_behaviour(values)
    if "opm_rescale" in legacy and not values.get("opm"):
        legacy = {k: v for k, v in legacy.items() if not k.startswith("opm_")}
    if not legacy:
        return None
    settings = ", ".join(f"{k}={v}" for k, v in legacy.items())
    return (f"this run predates these settings and keeps the behaviour it was trained with: {settings} "
            "(docs/methods.md: OPM before it followed its paper)")


RETIRED_IMBALANCE = (
    "'imbalance' was a setting of the built-in data version 1, retired in version 2 (the data this "
    "installation generates): a run made on version 1 cannot be evaluated or resumed here, retrain it; "
    "for new runs choose a regime instead, e.g. dataset_options: {regime: paper} or {regime: weak_useless} "
    "(presets builtin_paper, builtin_weak_useless, builtin_paper3; docs/data.md)"
)

#: Settings that may change between an interrupted run and its resumption
#: without changing the result (where it runs, how it reports, how long).
RESUMABLE_CHANGES = frozenset(
    {"epochs", "device", "out", "tensorboard", "progress", "num_workers", "data_root", "split_file", "data", "name"}
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
    opm_q_base: float = 0.5
    opm_lam: float = 0.5
    opm_p_exe: float = 0.7
    #: ``shared`` (the paper's one factor 1/(1-theta)) or ``per_modality`` (this project's earlier rule)
    opm_rescale: str = "shared"
    #: ``mean`` or ``sum`` of the other modalities' scores in OPM's ratio (N > 2)
    opm_ratio: str = "mean"
    #: OPM's inclusive window of 0-based epochs (the released warm-up: epochs 0-5 unmodulated)
    opm_starts: int = 6
    opm_ends: int | None = None
    # balancing method (None: derived from ``modulation`` and ``opm``, the paper's flags)
    method: str | None = None
    # hyper-parameters of the methods of ``ogmge.methods`` (docs/methods.md), prefixed by method
    gblend_super_epoch: int = 2
    gblend_w_min: float = 0.05
    gblend_delta_o_min: float = 0.01
    mdrop_p: float = 0.5
    mmpareto_scale: float = 1.5
    anchored_weight: float = 1.0
    # PMR (methods/pmr.py; defaults: the authors' main_Prototype_grad.py, docs/methods.md)
    pmr_alpha: float = 1.0
    pmr_momentum: float = 0.2
    pmr_start: int = 0
    pmr_end: int | None = 100
    pmr_subset: float = 0.1
    # MMCosine (methods/mmcosine.py): the cosine classifier's scale s
    mmcosine_scale: float = 10.0
    # AGM (methods/agm.py; defaults: the authors' utils/config.py and run/CREMAD_main.py)
    agm_alpha: float = 1.0
    agm_start: int = 0
    agm_end: int | None = 20
    agm_cap: float = 10.0
    agm_clip: float = 1.0
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

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Raise ValueError/TypeError naming the field and its value."""
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("estimator", self.estimator, ESTIMATORS, allow_none=True)
        check_choice("modulation", self.modulation, MODES)
        check_choice("method", self.method, METHODS, allow_none=True)
        if self.method is not None:
            self._apply_method()
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
        check_number("opm_q_base", self.opm_q_base, lo=0, hi=1)
        check_number("opm_lam", self.opm_lam, lo=0)
        check_number("opm_p_exe", self.opm_p_exe, lo=0, hi=1)
        check_choice("opm_rescale", self.opm_rescale, OPM_RESCALES)
        check_choice("opm_ratio", self.opm_ratio, OPM_RATIOS)
        check_number("opm_starts", self.opm_starts, integer=True, lo=0)
        check_number("opm_ends", self.opm_ends, integer=True, lo=0, allow_none=True)
        if self.opm_ends is not None and self.opm_ends < self.opm_starts:
            raise ValueError(f"opm_ends ({self.opm_ends}) must not be before opm_starts ({self.opm_starts})")
        check_number("gblend_super_epoch", self.gblend_super_epoch, integer=True, lo=1)
        check_number("gblend_w_min", self.gblend_w_min, lo=0, hi=1 / 3)
        check_number("gblend_delta_o_min", self.gblend_delta_o_min, lo=0, lo_open=True)
        check_number("mdrop_p", self.mdrop_p, lo=0, hi=1)
        check_number("mmpareto_scale", self.mmpareto_scale, lo=0, lo_open=True)
        check_number("anchored_weight", self.anchored_weight, lo=0, lo_open=True)
        check_number("pmr_alpha", self.pmr_alpha, lo=0, lo_open=True)
        check_number("pmr_momentum", self.pmr_momentum, lo=0, hi=1, hi_open=True)
        check_number("pmr_start", self.pmr_start, integer=True, lo=0)
        check_number("pmr_end", self.pmr_end, integer=True, lo=self.pmr_start, allow_none=True)
        check_number("pmr_subset", self.pmr_subset, lo=0, hi=1, lo_open=True)
        check_number("mmcosine_scale", self.mmcosine_scale, lo=0, lo_open=True)
        check_number("agm_alpha", self.agm_alpha, lo=0, lo_open=True)
        check_number("agm_start", self.agm_start, integer=True, lo=0)
        check_number("agm_end", self.agm_end, integer=True, lo=self.agm_start, allow_none=True)
        check_number("agm_cap", self.agm_cap, lo=0, lo_open=True)
        check_number("agm_clip", self.agm_clip, lo=0, lo_open=True)
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
        if self.dataset == "byo" and not self.data:
            raise ValueError("dataset 'byo' needs data (--data FILE.npz)")
        if self.data and self.dataset not in ("byo",):
            raise ValueError(f"data ({self.data!r}) is bring-your-own data; it needs dataset 'byo', got {self.dataset!r}")
        return self

    def _apply_method(self) -> None:
        """Set ``modulation``/``opm`` from ``method``. A paper flag left at its default
        follows the method; one set to something else contradicts it (an error naming both)."""
        assert self.method is not None
        modulation, opm = METHOD_MODULATION.get(self.method, ("Normal", False))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, wanted in (("modulation", modulation), ("opm", opm)):
            value = getattr(self, name)
            if value != wanted and value != defaults[name]:
                raise ValueError(
                    f"method {self.method!r} means {name}={wanted!r}, but {name} is {value!r}; "
                    f"give one of method or {name} (method: null derives the method from modulation/opm)"
                )
            setattr(self, name, wanted)

    @property
    def resolved_method(self) -> str:
        """The balancing method's name, also for configs that only set the paper's flags
        (``modulation`` OGM/OGM_GE with ``opm`` gives ``ogm+opm``/``ogm_ge+opm``)."""
        if self.method is not None:
            return self.method
        base = {"Normal": "normal", "OGM": "ogm", "OGM_GE": "ogm_ge"}[self.modulation]
        if self.opm:
            return "opm" if base == "normal" else f"{base}+opm"
        return base

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
        """Load a YAML file, or a shipped preset by name (see ``list_presets``)."""
        text, where = _read_config_text(path_or_preset)
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML: {exc}") from None
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None

    def differences(self, other: TrainConfig, *, ignore=RESUMABLE_CHANGES) -> dict[str, tuple[Any, Any]]:
        """``{setting: (mine, theirs)}`` for every setting that differs."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b.get(k)) for k in a if k not in ignore and a[k] != b.get(k)}


def list_presets() -> list[str]:
    """Names of the YAML presets shipped in ``ogmge/configs``."""
    root = resources.files("ogmge") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


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
