"""``results.json``: what a finished run writes and what ``compare`` and ``load_run`` read.

:class:`RunResults` is the file's typed form. ``Trainer`` writes it when a run
finishes (its presence marks the run finished); ``ogmge.training.compare`` reads
it for every run of a comparison. Keys this version does not know are kept in
``extra`` and written back unchanged, so an older or newer file round-trips; among
them ``prediction`` (the run's own rule) and ``pairs`` (the method's other prediction
rules, each at its own selected epoch), read through :attr:`RunResults.pairs` and
:meth:`RunResults.for_prediction`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_text

#: ``val_protocol`` of a run scored on its whole validation split.
PLAIN = "plain"
#: ``val_protocol`` of a run whose method fits on validation: its validation metrics are
#: cross-fitted (fitted on one half of the split, scored on the other, and the reverse).
CROSS_FIT = "cross-fit"


class ResultsError(ValueError):
    """A ``results.json`` that cannot be read (not JSON, or not a run's results)."""


@dataclass(frozen=True)
class RunResults:
    """A finished run: the validation-selected epoch and its metrics.

    ``val``/``test``: metric name -> value at ``best_epoch`` (``acc``, ``macro_f1``,
    ``n``, ``modality_acc/<name>``, ...), None without that split. ``val_protocol``:
    :data:`PLAIN` or :data:`CROSS_FIT` (then ``val`` is cross-fitted).
    """

    best_epoch: int | None = None
    selected_by: str | None = None
    method: str | None = None
    val_protocol: str = PLAIN
    epochs: int | None = None
    epochs_run: int | None = None
    optimizer: str | None = None
    patience: int | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    modalities: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    #: keys of the file this version does not know, kept for the round trip
    extra: dict[str, Any] = field(default_factory=dict)

    def metric(self, split: str, name: str) -> float | None:
        """``split``'s metric ``name`` (``"val"``/``"test"``), None when absent."""
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        return ((self.val if split == "val" else self.test) or {}).get(name)

    @property
    def prediction(self) -> str | None:
        """The run's own prediction rule (the file's ``prediction``); None in a file without it."""
        value = self.extra.get("prediction")
        return value if isinstance(value, str) else None

    @property
    def pairs(self) -> dict[str, dict[str, Any]]:
        """The method's other prediction rules, each at its own selected epoch (the file's ``pairs``:
        ``{rule: {label, best_epoch, selected_by, val_protocol, val, test[, holdout], weights}}``;
        ``ogmge.training.pairs``); empty in a file without them."""
        value = self.extra.get("pairs")
        return {str(k): v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}

    def for_prediction(self, rule: str, default: str | None = None) -> RunResults | None:
        """These results as a run predicting with ``rule`` reports them: the run itself for its own
        rule (``default`` when the file names none), the ``pairs`` entry for another rule, None when
        the run did not evaluate ``rule``."""
        if rule == (self.prediction or default):
            return self
        entry = self.pairs.get(rule)
        if entry is None:
            return None
        extra = {k: v for k, v in self.extra.items() if k not in ("pairs", "holdout")}
        extra["prediction"] = rule
        if entry.get("holdout") is not None:
            extra["holdout"] = entry["holdout"]
        return replace(self, best_epoch=entry.get("best_epoch"), selected_by=entry.get("selected_by"),
                       val_protocol=entry.get("val_protocol") or PLAIN, val=entry.get("val"),
                       test=entry.get("test"), extra=extra)

    @property
    def val_samples(self) -> int | None:
        n = (self.val or {}).get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) else None

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name != "extra":
                out[f.name] = _clean(getattr(self, f.name))
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, values: Any, *, where: str = "results") -> RunResults:
        if not isinstance(values, dict):
            raise ResultsError(f"{where}: expected a JSON object of a run's results, got {type(values).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {k: v for k, v in values.items() if k in known}
        for split in ("val", "test"):
            if kwargs.get(split) is not None and not isinstance(kwargs[split], dict):
                raise ResultsError(f"{where}: {split!r} must be an object of metrics, got {kwargs[split]!r}")
        for key in ("modalities", "class_names"):
            kwargs[key] = list(kwargs.get(key) or [])
        kwargs["val_protocol"] = kwargs.get("val_protocol") or PLAIN
        return cls(**kwargs, extra={k: v for k, v in values.items() if k not in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str = "results") -> RunResults:
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ResultsError(f"{where} is not valid JSON ({exc})") from None
        return cls.from_dict(values, where=where)

    def write(self, path: str | Path) -> Path:
        """Write atomically (``io_utils.atomic_write_text``)."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> RunResults:
        path = Path(path)
        return cls.from_json(path.read_text(), where=str(path))


def _clean(value: Any) -> Any:
    """Non-finite floats as null (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


__all__ = ["CROSS_FIT", "PLAIN", "ResultsError", "RunResults"]
