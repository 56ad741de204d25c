"""The plan of a comparison: which runs, their configurations, and the stored settings.

A :class:`Plan` is a tuple of :class:`PlannedRun` over one shared base
configuration and one directory. A run may name other runs it needs
(``PlannedRun.needs``: their ``key``); an executor schedules those first and fails
the run, with the reason, when one of them fails. ``compare.yaml``
(:class:`Settings`) records what the comparison is; a rerun merges with it
(:func:`reconcile`): methods and seeds extend, any other changed setting is refused.

The compared names are **candidates**: a method stands for each (method, prediction)
pair it declares (``multitask`` and ``multitask+stacked``), a pair name for itself, an
alias for its pair (``anchored``: ``multitask+stacked``, :func:`resolve_aliases`). The
plan trains each method once per seed (:func:`run_methods`); its pairs are read from
that one run (``results.json``'s ``pairs``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from ...io_utils import atomic_write_text
from ..config import TrainConfig
from ..stopping import RULES
from .lock import LOCK
from .lookups import (
    alias_target,
    candidate_order,
    depends_on,
    is_candidate,
    known_methods,
    modulation_of,
    run_method,
    tie_key,
    tie_rank,
)

DEFAULT_SEEDS = (0, 1, 2)
SETTINGS = "compare.yaml"
#: Files that claim a directory for a comparison about to start there (``ogmge demo`` writes its
#: ``ogmge-demo.json`` before anything else): beside them a directory still counts as empty.
CLAIMS = frozenset({"ogmge-demo.json"})
#: Settings a rerun may change freely (where and how runs execute, not what they compute).
FREE_SETTINGS = frozenset({"device", "progress", "num_workers", "tensorboard"})
#: Settings the comparison itself sets per run (stored neutral in compare.yaml).
PER_RUN = ("method", "modulation", "opm", "seed", "out", "name", "dependencies")
#: Fusion heads that take exactly two modalities (one conditions the other); a modality
#: alone is then trained with a concat head (a linear classifier on its features).
PAIR_FUSIONS = ("film", "gated")


class SettingsError(ValueError):
    """A comparison directory whose ``compare.yaml`` cannot be used."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: ``method`` (``normal`` for unimodal), ``modality`` (unimodal
    only), and the keys of the runs it ``needs`` (their results must exist before it starts);
    ``deps``: ``(dependency name, run key)`` pairs its configuration's ``dependencies`` get
    (``alone/<modality>`` for a method that ``depends_on`` the modality-alone runs)."""

    method: str
    seed: int
    modality: str | None = None
    needs: tuple[str, ...] = ()
    #: the method's options set for this comparison (``--method-opt METHOD.KEY=VALUE``), as
    #: ``((key, value), ...)``; empty: the method's declared defaults
    options: tuple[tuple[str, Any], ...] = ()
    deps: tuple[tuple[str, str], ...] = ()

    @property
    def group(self) -> str:
        return f"only-{self.modality}" if self.modality else self.method

    @property
    def rel(self) -> str:
        """The run's directory relative to the comparison's."""
        return f"{self.group}/seed-{self.seed}"

    @property
    def key(self) -> str:
        """The run's identity in a plan (its ``rel``)."""
        return self.rel

    @property
    def label(self) -> str:
        return f"{self.modality} alone" if self.modality else self.method


@dataclass(frozen=True)
class Settings:
    """``compare.yaml``: the comparison's identity (methods, seeds, modalities, shared config)."""

    methods: list[str]
    seeds: list[int]
    modalities: list[str] | None
    config: TrainConfig
    #: the data's fingerprint (``ogmge.training.fingerprint``) when the comparison began;
    #: None in a comparison written before it was recorded
    data_fingerprint: dict | None = None
    #: ``{method: {option: value}}`` set for the comparison (``--method-opt METHOD.KEY=VALUE``)
    method_options: dict | None = None
    #: the versioned early-stopping rule every run trains with (``ogmge.training.stopping``),
    #: fixed when the comparison began (``stopping_rule``); None in a comparison written before
    #: it was recorded (:func:`comparison_stopping` then asks its runs)
    stopping: str | None = None

    def save(self, out: str | Path) -> Path:
        values = self.config.to_dict()
        for key in FREE_SETTINGS:  # not part of the comparison's identity
            values.pop(key, None)
        doc: dict[str, Any] = {"methods": list(self.methods), "seeds": list(self.seeds),
                               "modalities": None if self.modalities is None else list(self.modalities),
                               "config": values}
        if self.data_fingerprint is not None:
            doc["data_fingerprint"] = dict(self.data_fingerprint)
        if self.method_options:
            doc["method_options"] = {m: dict(o) for m, o in self.method_options.items()}
        if self.stopping:
            doc["stopping_rule"] = self.stopping
        return atomic_write_text(Path(out) / SETTINGS, yaml.safe_dump(doc, sort_keys=False))

    @classmethod
    def load(cls, out: str | Path) -> Settings:
        """Read ``out/compare.yaml``; a file that is not a comparison's settings is a
        :class:`SettingsError` naming the file and what to do."""
        path = Path(out) / SETTINGS
        fix = (f"restore it, or delete {Path(out)} (its finished runs go with it) or use another --out "
               "to start a new comparison")
        try:
            stored = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SettingsError(f"{path} is not valid YAML ({first}); {fix}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{path} is not a text file; {fix}") from None
        if not isinstance(stored, dict):
            raise SettingsError(f"{path} is not a comparison's settings file (expected a mapping); {fix}")
        try:
            config = TrainConfig.from_dict(stored["config"])
            methods = [str(m) for m in stored.get("methods") or []]
            seeds = [int(s) for s in stored.get("seeds") or []]
            mods = stored.get("modalities")
            modalities = [str(m) for m in mods] if mods else None
            fingerprint = stored.get("data_fingerprint")
            if fingerprint is not None and not isinstance(fingerprint, dict):
                raise ValueError(f"data_fingerprint must be a mapping, got {fingerprint!r}")
            options = check_method_options(stored.get("method_options") or {}, run_methods(methods))
            rule = stored.get("stopping_rule")
            if rule is not None and rule not in RULES:
                raise ValueError(f"stopping_rule {rule!r} is not one of this version's rules {sorted(RULES)} "
                                 "(written by a newer ogmge?)")
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingsError(f"{path} is not a comparison's settings file ({exc}); {fix}") from None
        return cls(methods, seeds, modalities, config, fingerprint, options, rule)


@dataclass(frozen=True)
class Plan:
    """Every run of a comparison in ``out``, over the shared ``base`` configuration.

    Executors read ``runs`` (in order; a run's ``needs`` name earlier or later keys of
    the same plan) and :meth:`config_of`.
    """

    out: Path
    base: TrainConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    modalities: tuple[str, ...]
    runs: tuple[PlannedRun, ...] = field(default=())

    @classmethod
    def build(cls, out: str | Path, base: TrainConfig, methods: Sequence[str], seeds: Sequence[int],
              modalities: Sequence[str], method_options: Mapping[str, Mapping[str, Any]] | None = None) -> Plan:
        """Every method x seed (one run per method, whatever pairs of it are compared), then
        each modality alone x seed (method ``normal``). A method that ``depends_on``
        ``"alone"`` needs the modality-alone runs of its seed; ``method_options``: ``{method:
        {option: value}}`` its runs use."""
        opts = method_options or {}
        runs = [planned_method_run(m, s, modalities, opts.get(m)) for s in seeds for m in run_methods(methods)]
        runs += [PlannedRun("normal", s, modality=m) for s in seeds for m in modalities]
        return cls(Path(out), base, tuple(methods), tuple(seeds), tuple(modalities), tuple(runs))

    def config_of(self, run: PlannedRun) -> TrainConfig:
        return run_config(self.base, run, self.out)

    def run_dir(self, run: PlannedRun) -> Path:
        return self.out / run.rel


def planned_method_run(method: str, seed: int, modalities: Sequence[str],
                       options: Mapping[str, Any] | None = None) -> PlannedRun:
    """The run of ``method`` at ``seed`` (with ``options``), with the runs its ``depends_on`` names."""
    deps: list[tuple[str, str]] = []
    for what in depends_on(method):
        if what != "alone":
            raise ValueError(f"method {method}: compare cannot supply the runs it depends on ({what!r}); "
                             "it knows 'alone' (the modality-alone runs)")
        deps += [(f"alone/{m}", PlannedRun("normal", seed, modality=m).key) for m in modalities]
    return PlannedRun(method, seed, needs=tuple(k for _, k in deps), deps=tuple(deps),
                      options=tuple(sorted((options or {}).items())))


# ------------------------------------------------------------------ configurations
def neutral_config(config: TrainConfig) -> TrainConfig:
    """``config`` without what the comparison sets per run (method, seed, out, name)."""
    values = config.to_dict()
    defaults = TrainConfig().to_dict()
    for key in PER_RUN:
        values[key] = defaults[key] if key not in ("method", "out", "name") else None
    values["progress"] = False
    return TrainConfig.from_dict(values)


def run_config(base: TrainConfig, run: PlannedRun, out: str | Path) -> TrainConfig:
    """The configuration of one run of the comparison in ``out``."""
    modulation, opm = modulation_of(run.method)
    changes: dict[str, Any] = {
        "method": {"name": run.method, **dict(run.options)} if run.options else run.method,
        "modulation": modulation, "opm": opm, "seed": run.seed,
        "out": str(Path(out) / run.rel), "name": f"{run.label} seed {run.seed}", "progress": False,
    }
    changes["dependencies"] = {name: os.path.abspath(Path(out) / key) for name, key in run.deps}
    if run.modality is not None:
        changes["modalities"] = [run.modality]
        if base.fusion in PAIR_FUSIONS:  # conditioned on one modality by another: a single one needs concat
            changes["fusion"] = "concat"
            changes["model_options"] = {k: v for k, v in base.model_options.items() if k != "fusion_options"}
    return base.replace(**changes)


def base_config(config: TrainConfig | dict | str | Path | None, settings: dict) -> TrainConfig:
    """The shared configuration from ``compare()``'s arguments (data paths resolved)."""
    if config is None:
        values = TrainConfig().to_dict()
    elif isinstance(config, TrainConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = {**TrainConfig().to_dict(), **config}
    else:
        values = TrainConfig.load(config).to_dict()
    values.update(settings)
    if settings.get("data") and "dataset" not in settings:
        values["dataset"] = "byo"
    for key in ("data", "data_root", "split_file"):  # resolved: a rerun from elsewhere names the same files
        if values.get(key):
            values[key] = os.path.abspath(os.path.expanduser(str(values[key])))
    for key in ("method", "seed", "name"):
        if key in settings:
            raise ValueError(f"{key} is set per run by compare (methods=..., seeds=...); do not give {key}={settings[key]!r}")
    return neutral_config(TrainConfig.from_dict(values))


def check_methods(methods: Iterable[str]) -> list[str]:
    """Known names, ``normal`` first, the rest in tie order, no repeats."""
    methods = list(methods)
    known = known_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {list(known)}")
    out = ["normal"] + [m for m in methods if m != "normal"]
    return sorted(dict.fromkeys(out), key=tie_rank)


def check_candidates(names: Iterable[str]) -> list[str]:
    """Compared names (module docstring): registered methods and their pairs
    (``multitask+stacked``); ``normal`` first, the rest in tie order, no repeats."""
    names = list(names)
    unknown = [n for n in names if not is_candidate(n)]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {candidate_order()} (a method stands for "
                         "each of its prediction rules: multitask for multitask and multitask+stacked)")
    out = ["normal"] + [n for n in names if n != "normal"]
    return sorted(dict.fromkeys(out), key=tie_key)


def resolve_aliases(names: Iterable[str]) -> list[str]:
    """Each alias replaced by the pair it stands for (``anchored`` -> ``multitask+stacked``)."""
    return [alias_target(n) or n for n in names]


def run_methods(candidates: Iterable[str]) -> list[str]:
    """The methods whose runs the candidates read, each once, in order."""
    return list(dict.fromkeys(run_method(c) for c in candidates))


def check_method_options(method_options: Mapping[str, Mapping[str, Any]] | None,
                         methods: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{method: {option: value}}`` validated by each method's declared options (an unknown
    option or a bad value names both); every method named must be one of ``methods``."""
    if not method_options:
        return {}
    if not isinstance(method_options, Mapping):
        raise ValueError(f"method_options must map a method to {{option: value}}, got {method_options!r}")
    from ...methods import registry

    compared = set(methods)
    out: dict[str, dict[str, Any]] = {}
    for name, given in method_options.items():
        if name not in compared and alias_target(name) is not None:
            raise ValueError(f"method options for {name!r}: in a comparison {name} is the pair "
                             f"{alias_target(name)}, trained as {run_method(str(alias_target(name)))}: give the "
                             f"options of {run_method(str(alias_target(name)))} (ogmge methods "
                             f"{run_method(str(alias_target(name)))})")
        if name not in compared:
            raise ValueError(f"method options for {name!r}, which is not compared (methods: "
                             f"{', '.join(sorted(compared))}); add it to --methods")
        if not isinstance(given, Mapping):
            raise ValueError(f"method options of {name} must be a mapping of option to value, got {given!r}")
        cls = registry.get(name)
        cls.resolve_options(given)  # names the option and the value it refuses
        declared = {o.name: o for o in cls.options}
        out[str(name)] = {str(k): declared[k].validate(v, owner=name) for k, v in given.items()}
    return out


def check_seeds(seeds: Iterable[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    return sorted(dict.fromkeys(seeds))


def check_out(out: Path) -> None:
    """``out`` can hold a comparison: a directory with ``compare.yaml``, an empty one (or one
    holding only a claim, ``CLAIMS``), or a path where one can be created (nothing is created here)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory: choose a directory for the comparison")
    if (out / SETTINGS).is_file():
        return
    if out.is_dir() and any(p.name != LOCK and p.name not in CLAIMS for p in out.iterdir()):
        raise ValueError(f"--out {out} is not empty and holds no comparison ({SETTINGS}); refusing to write "
                         "into it: choose a new or empty directory")


def make_out(out: Path) -> None:
    """Create ``out`` (and its parents); an OSError becomes a message naming the directory."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = f"a part of the path is a file ({reason})"
        raise ValueError(f"--out {out}: cannot write the comparison there: {reason}; choose a directory you "
                         "can write to") from None


def reconcile(out: Path, base: TrainConfig, methods: list[str], seeds: list[int],
              method_options: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[list[str], list[int]]:
    """Merge with ``out``'s stored settings: methods and seeds extend; anything else (the
    shared configuration, a method's options) must match."""
    check_out(out)
    if not (out / SETTINGS).is_file():
        return methods, seeds
    stored = Settings.load(out)
    before, now = stored.method_options or {}, dict(method_options or {})
    changed = sorted(m for m in set(before) | set(now) if before.get(m, {}) != now.get(m, {}))
    if changed:
        detail = "; ".join(f"{m}: {before.get(m, {})!r} there, {now.get(m, {})!r} now" for m in changed)
        raise ValueError(
            f"{out} holds a comparison whose methods ran with other options ({detail}); give the same "
            f"--method-opt as when it began, or use another --out (or delete {out} to start again)"
        )
    diffs = stored.config.differences(base, ignore=FREE_SETTINGS)
    if diffs:
        detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diffs.items())
        raise ValueError(
            f"{out} holds a comparison with other settings ({detail}); only --methods and --seeds may be "
            f"added to it. Use another --out, or delete {out} to start again"
        )
    return check_candidates(stored.methods + methods), check_seeds(stored.seeds + seeds)


def recorded_rules(out: Path) -> dict[str, list[str]]:
    """``{versioned stopping rule: [run directories, relative to out]}`` of the runs in ``out``
    that have trained (``results.json`` or ``last.pt``), from each one's ``config.yaml``; a
    run made before rules had names (no ``stopping`` there) ran ``raw_v1`` (``LEGACY``)."""
    from ..checkpoint import LAST
    from ..logs import CONFIG, RESULTS
    from ..stopping import LEGACY

    found: dict[str, list[str]] = {}
    for path in sorted(out.rglob(CONFIG)):
        run = path.parent
        if not ((run / RESULTS).is_file() or (run / LAST).is_file()):
            continue
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # unreadable: it says nothing about the rule (the run itself reports it)
        rule = values.get("stopping", LEGACY) if isinstance(values, dict) else None
        if isinstance(rule, str):
            found.setdefault(rule, []).append(run.relative_to(out).as_posix())
    return found


def comparison_stopping(out: Path, base: TrainConfig, modalities: Sequence[str],
                        stored: Settings | None) -> str:
    """The versioned early-stopping rule the runs of the comparison in ``out`` train with, so
    that runs added later (new seeds, new methods) select and stop as its first ones did:
    the rule ``compare.yaml`` recorded when the comparison began; for a comparison begun before
    it was recorded, the rule its trained runs recorded; for a new one, what ``base.stopping``
    resolves to for the comparison's model builder. A ValueError when trained runs recorded
    another rule (a mix), listing them and what to do."""
    from ..factory import default_builder
    from ..stopping import resolve

    found = recorded_rules(out)
    rule = stored.stopping if stored is not None else None
    if rule is None and len(found) == 1:
        rule = next(iter(found))
    if rule is None:
        rule = resolve(base.stopping, default_builder(base, cast(Any, dict.fromkeys(modalities))))
    others = {r: runs for r, runs in found.items() if r != rule}
    if not others:
        return rule

    def runs_of(runs: list[str]) -> str:
        return ", ".join(runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")

    listing = "; ".join(f"{r}: {runs_of(runs)}" for r, runs in sorted(found.items()))
    if stored is not None and stored.stopping is not None:
        why = f"its {SETTINGS} records the early-stopping rule {rule}, but runs were trained with another"
        todo = f"delete the runs not trained with {rule} (the next compare retrains them with it)"
    else:
        why = "its runs were trained with different early-stopping rules (a comparison made across ogmge versions)"
        todo = ("delete the runs of one rule (the next compare retrains them with the other; docs/training.md, "
                "\"Selection and early stopping\")")
    raise ValueError(f"{out}: {why} ({listing}); a comparison averages and compares runs of one rule: {todo}, "
                     "or use another --out")


def stored_modalities(out: Path) -> list[str] | None:
    if not (out / SETTINGS).is_file():
        return None
    return Settings.load(out).modalities


__all__ = ["DEFAULT_SEEDS", "FREE_SETTINGS", "PAIR_FUSIONS", "PER_RUN", "SETTINGS", "Plan", "PlannedRun",
           "Settings", "SettingsError", "base_config", "check_candidates", "check_method_options", "check_methods",
           "check_out", "check_seeds", "comparison_stopping", "make_out", "neutral_config", "planned_method_run",
           "reconcile", "recorded_rules", "resolve_aliases", "run_config", "run_methods", "stored_modalities"]
