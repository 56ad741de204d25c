"""The parts of a run's configuration: data, model, method, optimisation, run.

``TrainConfig`` stays one flat dataclass: flat YAML keys and CLI flags, flat attributes
(``config.lr``), a flat ``to_dict``. ``PARTS`` is the one table saying which part each setting
belongs to; ``config.parts`` gives read-only views built from it (``config.parts.optimisation.lr``,
``dict(config.parts.data)``). ``used_settings`` says which settings a run reads, and with which
value, so that ``TrainConfig.differences`` compares only those and reports them by part
(``Differences``): a resume or a comparison rerun is not refused over a setting the run never reads,
such as ``split_file`` for bring-your-own data or ``momentum`` under Adam.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any, NamedTuple

from ogmge.data.paper import DATASETS as _PAPER_READERS
from ogmge.models.fusion import FUSIONS

if TYPE_CHECKING:
    from .config import TrainConfig

#: Which part of a run every setting of ``TrainConfig`` belongs to (the one table; each setting in
#: exactly one part, checked when ``ogmge.training.config`` is imported).
PARTS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "data_root", "split_file", "data", "modalities", "val_fraction", "dataset_options",
             "val_selection"),
    "model": ("fusion", "estimator", "width", "model_options"),
    # the balancing method: its name and options, and the paper's flags that set it (DESIGN §5)
    "method": ("method", "method_class", "prediction", "modulation", "opm", "alpha", "modulation_starts",
               "modulation_ends", "modulate_params", "coefficient", "method_preset"),
    "optimisation": ("epochs", "batch_size", "eval_batch_size", "lr", "optimizer", "momentum", "weight_decay",
                     "lr_step", "lr_gamma", "grad_clip", "amp", "patience", "stopping"),
    "run": ("seed", "device", "out", "name", "tensorboard", "num_workers", "progress", "trace_every",
            "eval_test_every_epoch", "dependencies"),
}
#: ``{setting: part}``, from ``PARTS``.
PART_OF: dict[str, str] = {key: part for part, keys in PARTS.items() for key in keys}
#: Datasets read from ``data_root`` (the paper's and a ``prepare clips`` cache); the paper's
#: readers also take a ``split_file`` (the training list).
_ROOT_DATASETS = (*_PAPER_READERS, "clips")
_SPLIT_FILE_DATASETS = tuple(_PAPER_READERS)


def check_parts(fields: list[str]) -> None:
    """Raise naming the settings that are in no part of ``PARTS``, in several, or in a part but
    not a setting (``fields``: ``TrainConfig``'s field names)."""
    seen: dict[str, list[str]] = {}
    for part, keys in PARTS.items():
        for key in keys:
            seen.setdefault(key, []).append(part)
    problems = [f"{k} is in no part" for k in fields if k not in seen]
    problems += [f"{k} is in the parts {v}" for k, v in seen.items() if len(v) > 1]
    problems += [f"{k} (part {v[0]}) is not a setting" for k, v in seen.items() if k not in fields]
    if problems:
        raise RuntimeError("ogmge.training.config_parts.PARTS must name every setting once: " + "; ".join(problems))


class Part(Mapping[str, Any]):
    """One part of a configuration, read-only: ``part.lr``, ``part["lr"]``, ``dict(part)``
    (a copy of the values: changing the configuration afterwards does not change the part)."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", deepcopy(dict(values)))

    @property
    def name(self) -> str:
        return self._name

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"the {self._name} part has no setting {key!r} (its settings: "
                                 f"{', '.join(self._values)}; {key!r} is in part "
                                 f"{PART_OF.get(key, 'none')})") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"the {self._name} part is read-only; change the configuration instead "
                             f"(config.replace({key}=...))")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{self._name}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


class Parts(NamedTuple):
    """A configuration's parts (``TrainConfig.parts``)."""

    data: Part
    model: Part
    method: Part
    optimisation: Part
    run: Part


def parts_of(config: TrainConfig) -> Parts:
    values = config.to_dict()
    return Parts(**{part: Part(part, {k: values[k] for k in keys}) for part, keys in PARTS.items()})


def config_builder(config: TrainConfig) -> str | None:
    """The model builder when the configuration alone decides it (``model_options.builder``, or
    generic encoders for data that are not the paper's); None when it depends on the data's
    modalities (``factory.default_builder``)."""
    builder = config.model_options.get("builder")
    if isinstance(builder, str):
        return builder
    return None if config.dataset in _ROOT_DATASETS else "generic"


def used_settings(config: TrainConfig) -> dict[str, Any]:
    """``{setting: the value the run uses}`` for every setting the run reads.

    Left out: settings its data do not read (``data`` unless bring-your-own data, ``data_root``
    unless data read from a directory, ``split_file`` unless the paper's readers), and ``momentum``
    when the optimiser is certainly not SGD. Resolved: ``estimator: null`` (the fusion's own),
    ``prediction: null`` (the method's default), ``eval_batch_size: null`` (``batch_size``),
    ``patience: auto`` where the builder is known, and, for the built-in data (which have their
    own validation split), ``val_fraction`` to whether there is validation at all. The method's
    options are the run's own method's only (``method`` carries no other)."""
    used = config.to_dict()
    if config.dataset != "byo":
        del used["data"]
    if config.dataset not in _ROOT_DATASETS:
        del used["data_root"]
    if config.dataset not in _SPLIT_FILE_DATASETS:
        del used["split_file"]
    if config.dataset == "builtin":
        used["val_fraction"] = config.val_fraction > 0
    used["estimator"] = config.estimator or FUSIONS[config.fusion].default_estimator
    used["prediction"] = config.resolved_prediction
    used["eval_batch_size"] = config.eval_batch_size or config.batch_size
    builder = config_builder(config)
    optimizer = config.optimizer if builder is None else config.resolved_optimizer(builder)
    if optimizer not in ("sgd", "auto"):
        del used["momentum"]
    if builder is not None:
        used["patience"] = config.resolved_patience(builder)
    return used


class Differences(dict[str, tuple[Any, Any]]):
    """``{setting: (mine, theirs)}`` under the flat setting names (as written, also where a
    default was resolved to compare them); ``by_part()`` groups them, ``labels()`` names them
    ``part.setting``, ``describe()`` words them for a message."""

    def by_part(self) -> dict[str, dict[str, tuple[Any, Any]]]:
        out: dict[str, dict[str, tuple[Any, Any]]] = {}
        for part, keys in PARTS.items():
            mine = {k: self[k] for k in keys if k in self}
            if mine:
                out[part] = mine
        return out

    def labels(self) -> list[str]:
        return [f"{part}.{k}" for part, diffs in self.by_part().items() for k in diffs]

    def describe(self, mine: str = "mine", theirs: str = "theirs") -> str:
        """``"optimisation.lr: checkpoint 0.001, now 0.01; ..."``."""
        return "; ".join(f"{part}.{k}: {mine} {a!r}, {theirs} {b!r}"
                         for part, diffs in self.by_part().items() for k, (a, b) in diffs.items())


__all__ = ["PARTS", "PART_OF", "Differences", "Part", "Parts", "check_parts", "config_builder", "parts_of",
           "used_settings"]
