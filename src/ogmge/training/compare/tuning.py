"""Tuned comparisons (``ogmge compare --tune TRIALS``): every candidate at its best settings,
chosen on validation half A, compared on half B; the test split only reports.

**Candidates.** Every method of the comparison (``normal`` included: the baseline is a tuned
joint model) and each modality alone, each with the same budget of ``TRIALS`` settings.

**Search space** (:func:`candidate_space`): the options each method declares with a
``space`` (``ogmge.methods.registry.Option``; OGM-GE's α log-uniform, OPM's q_base/λ,
G-Blending's super-epoch, MMPareto's scale, ...) that the configuration can set, plus the
shared schedule (:data:`SHARED_SPACE`: optimiser, learning rate log-uniform, weight decay
log-uniform; the epoch count through early stopping), unless ``tune_shared="none"``.
The authors' default (the comparison's configuration) is always the first evaluated point
(enqueued as trial 0); a space that would exclude it is widened to include it.

**Protocol** (:class:`Protocol`). Every run selects its epoch and stops early on half A of
the validation split (``val_selection``, ``ogmge.training.selection``). In trials a method
fitted on validation fits and is scored within A (on A₁ and A₂, its own cross-fitting);
the chosen setting's runs keep what they fitted on A and are scored once on half B
(``results.json`` ``holdout``), and the verdict compares candidates on B only. With
``cv=K`` the training and validation splits are pooled and cut into K group-aware folds
(test untouched) and the same A/B protocol runs inside every fold: a trial's score is the
mean half-A accuracy over the folds, the verdict the mean half-B accuracy. ``cv`` is the
default when the validation split holds fewer than :data:`CV_BELOW` samples.

**Study store.** One Optuna study per candidate (TPE, seeded from ``(tune_seed, candidate)``;
median or successive-halving pruning on the per-epoch half-A accuracy), in a SQLite file
in the comparison directory (``tuning.db``) or in ``storage`` (an RDB URL:
``postgresql://user:pw@host/db``, ``mysql+pymysql://...``; several drivers may share one).
This driver alone opens the storage (ask/tell): runs never do. Rerunning continues the
studies; a larger ``TRIALS`` adds trials; a changed space is refused, naming the options.
A trial left RUNNING by a driver that died (kill -9) is marked FAIL on the next run and
does not count against the budget; pruned and failed trials are recorded as such and never
selected.

**Trials as jobs** (:func:`run_searches`). Every trial is one job of the comparison's
executor (:class:`~.execute.LocalExecutor`: ``jobs`` worker processes; Ray: one task of
``cpus_per_run`` CPUs each), up to ``jobs`` (Ray: what the cluster runs at once) in flight
*across* the candidates' studies: a free slot goes to the study with the fewest trials in
flight, then the least progress, so that each study keeps one trial in flight while there
are at least as many open studies as slots. The driver asks the study for a setting and
sends it with a pruning **snapshot** (:func:`study_snapshot`: every trial of that study
finished at submission, with its per-epoch half-A values and the pruner's marks); the
worker decides from it alone (:class:`SnapshotPruner`: the study's own pruner over a
private in-memory copy), never opening the storage; the driver then reports the trial's
per-epoch values, marks and state (COMPLETE, PRUNED, FAIL) to the study. With one trial of
a study in flight at a time, its snapshot is every earlier trial: the same decisions, and
the same TPE proposals, as one trial after another. A study reproduces from its seed only
when it ran in one uninterrupted session with at most one trial in flight at any time
(``summary.json``: ``reproducible``); with several in flight, TPE proposes without the
results of the trials still running and a trial's snapshot lacks them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ogmge.seeding import component_seed

from ..config import TrainConfig
from ..logs import CONFIG, RESULTS
from .execute import Job, LocalExecutor, Outcome, default_jobs, run_state, worker_device
from .lookups import tie_rank
from .plan import PlannedRun, run_config

#: Validation splits below this many samples default to ``cv`` folds (docs/training.md,
#: "Tuned comparisons": half B of 100 samples moves by one point per sample, twice the tie
#: tolerance; benchmarks/tune_protocols.py measures how often each protocol picks the best).
CV_BELOW = 200
#: Folds of the default ``cv``.
DEFAULT_FOLDS = 5
TUNE_DIR = "tune"
DEFAULT_DB = "tuning.db"
TUNING_JSON = "tuning.json"
PRUNERS = ("median", "halving", "none")
SHARED_CHOICES = ("schedule", "none")
#: Trial states counted against the budget (FAIL only when the setting itself failed).
_INTERRUPTED = "interrupted"


# ------------------------------------------------------------------ search spaces
@dataclass(frozen=True)
class Param:
    """One searched setting: a TrainConfig key and its space (kinds as ``registry.Space``)."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    source: str = ""

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind in ("int", "log_int"):
            return IntDistribution(int(self.low), int(self.high), log=self.kind == "log_int")
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "log_uniform")

    def widened(self, default: Any) -> Param:
        """This space, extended to hold ``default`` (the authors' value is always a point)."""
        if default is None:
            return self
        if self.kind == "categorical":
            return self if default in self.choices else Param(self.key, self.kind, choices=(*self.choices, default),
                                                              source=self.source)
        assert self.low is not None and self.high is not None
        low, high = min(self.low, default), max(self.high, default)
        return Param(self.key, self.kind, low, high, source=self.source)

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}


#: The shared schedule, searched for every candidate (Normal's included).
SHARED_SPACE = (
    Param("optimizer", "categorical", choices=("sgd", "adam", "adamw"), source="shared schedule"),
    Param("lr", "log_uniform", 1e-4, 1e-1, source="shared schedule"),
    Param("weight_decay", "log_uniform", 1e-6, 1e-2, source="shared schedule"),
)


#: Prefix of a searched method option's key (``method.p``: the ``p`` of ``method: {name, p}``).
METHOD_KEY = "method."


def method_params(method: str) -> list[Param]:
    """The options ``method`` declares with a search space: keyed by their flat config key
    when they have one (``paper_key``: ``alpha``), else ``method.<option>`` (set through
    ``method: {name: METHOD, <option>: value}``)."""
    from ogmge.methods import registry

    out = []
    for opt in getattr(registry.get(method), "options", ()):
        space = getattr(opt, "space", None)
        if space is None:
            continue
        key = opt.paper_key or f"{METHOD_KEY}{opt.name}"
        out.append(Param(key, space.kind, space.low, space.high, tuple(space.choices),
                         source=f"{method}.{opt.name}"))
    return out


def default_value(base: TrainConfig, key: str, builder: str, method: str = "normal") -> Any:
    """The configuration's value of a searched setting: a method option's declared default (its
    dataset preset on a paper dataset; compare's shared configuration names no method), the
    resolved optimiser, else the key's value."""
    if key.startswith(METHOD_KEY):
        from ogmge.methods import registry

        name = key[len(METHOD_KEY):]
        preset = registry.dataset_preset(registry.get(method), base.dataset) if base.method_preset is not None else None
        if preset is not None and name in preset.options:  # the authors' value on this dataset
            return preset.options[name]
        return next(o.default for o in registry.get(method).options if o.name == name)
    if key == "optimizer":
        return base.resolved_optimizer(builder)
    return getattr(base, key)


def apply_params(cfg: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """``cfg`` (a run's configuration, its method named) with a setting applied."""
    flat = {k: v for k, v in params.items() if not k.startswith(METHOD_KEY)}
    opts = {k[len(METHOD_KEY):]: v for k, v in params.items() if k.startswith(METHOD_KEY)}
    if opts:
        fixed = dict(cfg.method) if isinstance(cfg.method, Mapping) else {}
        flat["method"] = {**fixed, "name": cfg.resolved_method, **opts}
    return cfg.replace(**flat) if flat else cfg


def candidate_space(method: str, base: TrainConfig, *, builder: str, tune_shared: str = "schedule",
                    fixed: Sequence[str] = ()) -> list[Param]:
    """The search space of one candidate (its method's options, less those in ``fixed``,
    + the shared schedule), each widened to hold the configuration's value. A setting whose
    value is None (automatic: MIDAS's warm-up scaled to the budget, an OGM window without an
    end) is no point of a numeric space, so it is not searched: it stays automatic, and the
    default setting stays one of the evaluated points."""
    params = [p for p in method_params(method) if p.source.split(".", 1)[-1] not in set(fixed)]
    params += list(SHARED_SPACE) if tune_shared == "schedule" else []
    values = [(p, default_value(base, p.key, builder, method)) for p in params]
    return [p.widened(v) for p, v in values if v is not None or p.kind == "categorical"]


def default_point(space: Sequence[Param], base: TrainConfig, builder: str, method: str = "normal") -> dict[str, Any]:
    return {p.key: default_value(base, p.key, builder, method) for p in space}


def space_dict(space: Sequence[Param]) -> dict[str, dict]:
    return {p.key: p.to_dict() for p in space}


# ------------------------------------------------------------------ protocol
@dataclass(frozen=True)
class Protocol:
    """Half A selects, half B scores; ``folds`` > 0: inside each of K folds of train + val."""

    seed: int
    folds: int = 0

    def selections(self, *, holdout: bool) -> list[dict]:
        """``val_selection`` of each run of one setting (one, or one per fold)."""
        base: dict[str, Any] = {"half": "A", "seed": self.seed}
        if holdout:
            base["holdout"] = True
        if not self.folds:
            return [base]
        return [{**base, "folds": self.folds, "fold": k} for k in range(self.folds)]

    def to_dict(self) -> dict:
        return {"kind": "cv" if self.folds else "halves", "folds": self.folds, "seed": self.seed}


def choose_folds(cv: int | None, val_samples: int | None) -> int:
    """The folds a comparison uses: ``cv`` when given (0: halves of the validation split),
    else :data:`DEFAULT_FOLDS` below :data:`CV_BELOW` validation samples."""
    if cv is not None:
        if isinstance(cv, bool) or not isinstance(cv, int) or cv < 0 or cv == 1:
            raise ValueError(f"cv must be 0 (halves of the validation split) or an integer >= 2, got {cv!r}")
        return cv
    return DEFAULT_FOLDS if val_samples is not None and val_samples < CV_BELOW else 0


# ------------------------------------------------------------------ the study store
class SpaceChanged(ValueError):
    """A stored study searched another space (or protocol) than the one asked for now."""


def _driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_pruner(name: str):
    """The Optuna pruner ``--pruner NAME`` means: ``median`` (after 3 finished trials, below the
    median of the others at the same epoch, from the third epoch on), ``halving`` (successive
    halving from epoch 2, reduction factor 3) or ``none``."""
    import optuna

    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
               "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
               "none": optuna.pruners.NopPruner}
    if name not in pruners:
        raise ValueError(f"pruner must be one of {list(PRUNERS)}, got {name!r}")
    return pruners[name]()


def open_study(storage, name: str, *, space: Sequence[Param], protocol: Protocol, sampler_seed: int,
               pruner: str = "median"):
    """Create or load study ``name`` in ``storage`` (an Optuna storage or URL): TPE seeded with
    ``sampler_seed``; a stored study with another space or protocol is refused
    (:class:`SpaceChanged`, naming the options); trials its dead drivers left RUNNING are
    marked FAIL."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed % 2**32),
                                pruner=make_pruner(pruner))
    wanted = {"space": space_dict(space), "protocol": protocol.to_dict()}
    stored = {k: study.user_attrs.get(k) for k in wanted}
    if stored["space"] is None:
        for k, v in wanted.items():
            study.set_user_attr(k, v)
    else:
        changed = sorted(k for k in set(stored["space"]) | set(wanted["space"])
                         if stored["space"].get(k) != wanted["space"].get(k))
        if changed or stored["protocol"] != wanted["protocol"]:
            what = ", ".join(f"{k}: {stored['space'].get(k)} stored, {wanted['space'].get(k)} now" for k in changed)
            if stored["protocol"] != wanted["protocol"]:
                what = "; ".join(x for x in (what, f"protocol: {stored['protocol']} stored, "
                                             f"{wanted['protocol']} now") if x)
            raise SpaceChanged(f"study {name!r} searched another space ({what}); use another --out (or "
                               "--storage), or delete the study to start its search again")
    fail_orphans(study)
    return study


def fail_orphans(study) -> list[int]:
    """Mark FAIL the RUNNING trials whose driver (``host:pid``) is this host's and no longer
    alive (a kill -9 mid-trial); other hosts' trials are left to their drivers. Returns
    the trial numbers marked."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    marked = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(t.user_attrs.get("driver", ""))
        h, _, pid = owner.rpartition(":")
        if h == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(t._trial_id, "failed", _INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            marked.append(t.number)
    return marked


def counted(study) -> int:
    """Trials that count against the budget: finished (complete or pruned) or failed by
    their setting (not by an interruption)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get("failed") != _INTERRUPTED:
            n += 1
    return n


def ensure_default(study, point: dict) -> None:
    """Enqueue the default setting unless a trial of it is finished, waiting or running."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)
    if any(t.user_attrs.get("default") and t.state in live for t in study.get_trials(deepcopy=False)):
        return
    if any(t.user_attrs.get("default") and t.state == TrialState.FAIL and t.user_attrs.get("failed") != _INTERRUPTED
           for t in study.get_trials(deepcopy=False)):
        return  # the default itself failed (diverged): recorded, not retried
    study.enqueue_trial(point, user_attrs={"default": True})


def best_trial(study):
    """The COMPLETE trial with the highest score (ties: the earliest, so the default wins
    them), or None. Pruned and failed trials are never chosen."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        return None
    return max(done, key=lambda t: (t.value, -t.number))


# ------------------------------------------------------------------ trials
class Pruned(Exception):
    """Raised inside a trial when the pruner stops it."""


@dataclass(frozen=True)
class Candidate:
    """A method, or a modality alone (method ``normal``)."""

    method: str
    modality: str | None = None
    #: options the user fixed (``--method-opt METHOD.KEY=VALUE``): not searched
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"only-{self.modality}" if self.modality else self.method

    def planned(self, seed: int) -> PlannedRun:
        return PlannedRun(self.method, seed, modality=self.modality, options=self.options)

    @property
    def label(self) -> str:
        return f"{self.modality} alone" if self.modality else self.method


@dataclass
class TrialOutcome:
    score: float
    details: dict = field(default_factory=dict)


class TrialRunner:
    """Runs one trial: one run per fold (``Protocol.selections``) of ``params`` on the first
    seed, without a run directory and without the test split; ``report(epoch, value) ->
    prune?`` after each epoch of the first fold. Picklable (a trial job carries it to a
    worker, which keeps one per comparison and its splits across trials: ``cache_key``)."""

    def __init__(self, base: TrainConfig, seed: int, protocol: Protocol) -> None:
        self.base, self.seed, self.protocol = base, seed, protocol
        #: the device a worker runs on (a pool worker's own, or the executor's); None: the configuration's
        self.device: str | None = None
        self.cache_key = hashlib.sha256(json.dumps([base.to_dict(), seed, protocol.to_dict()], sort_keys=True,
                                                   default=str).encode()).hexdigest()
        self._data: dict[str, Any] = {}
        self._shipped = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": {}, "device": None}  # the splits stay where they were built

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._shipped = True

    def config(self, candidate: Candidate, params: Mapping[str, Any], selection: dict) -> TrainConfig:
        cfg = run_config(self.base, candidate.planned(self.seed), "unused")
        cfg = apply_params(cfg, params).replace(val_selection=selection, out=None, progress=False)
        return cfg.replace(device=self.device) if self.device else cfg

    def data(self, candidate: Candidate, cfg: TrainConfig):
        """The candidate's splits without test (built once; trials never read the test split)."""
        if candidate.name not in self._data:
            from ..data import DataBundle, build_datasets

            full = build_datasets(cfg.replace(val_selection={}))
            self._data[candidate.name] = DataBundle(full.train, full.val, None)
        return self._data[candidate.name]

    def __call__(self, candidate: Candidate, params: Mapping[str, Any],
                 report: Callable[[int, float], bool]) -> TrialOutcome:
        from ..loop import train

        scores, epochs = [], []
        for i, selection in enumerate(self.protocol.selections(holdout=False)):
            cfg = self.config(candidate, params, selection)

            def on_epoch(event: str, info: dict, first: bool = i == 0) -> None:
                value = info["metrics"].get("val/acc")
                if first and event == "epoch_end" and value is not None and report(int(info["epoch"]), float(value)):
                    raise Pruned(f"pruned after epoch {int(info['epoch']) + 1}")

            result = train(cfg, datasets=self.data(candidate, cfg), callbacks=[on_epoch])
            val = result.val_metrics or {}
            if val.get("acc") is None:
                raise ValueError("the trial's run has no half-A score")
            scores.append(float(val["acc"]))
            epochs.append(len(result.history))
        return TrialOutcome(sum(scores) / len(scores), {"fold_scores": scores, "epochs_run": epochs})


# ------------------------------------------------------------------ pruning from a snapshot
def study_snapshot(study) -> list[dict]:
    """What a trial job carries of its study to decide pruning: every trial finished now
    (complete, pruned, failed) with its state, score, per-epoch half-A values and the
    pruner's marks (Optuna's system attributes, e.g. successive halving's rungs). Trials
    still running (elsewhere) are not in it."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [{"state": t.state.name, "value": t.value if t.state == TrialState.COMPLETE else None,
             "intermediate": dict(t.intermediate_values), "marks": dict(t.system_attrs)}
            for t in study.get_trials(deepcopy=False, states=done)]


class SnapshotPruner:
    """Decides in a worker whether its trial stops, from ``snapshot`` (:func:`study_snapshot`)
    alone: ``pruner`` (the study's, copied) judges over a private in-memory study that holds
    the snapshot's trials and this one, so ``--pruner`` means exactly what it means in the
    study; the study's storage is never opened. ``values`` and :meth:`marks` are what the
    driver reports to the study afterwards."""

    def __init__(self, pruner, snapshot: Sequence[Mapping[str, Any]]) -> None:
        import copy

        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="maximize", pruner=copy.deepcopy(pruner),
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        trials = [create_trial(state=TrialState[t["state"]], value=t["value"] if t["state"] == "COMPLETE" else None,
                               intermediate_values={int(k): float(v) for k, v in t["intermediate"].items()},
                               system_attrs=dict(t.get("marks") or {})) for t in snapshot]
        if trials:
            self.study.add_trials(trials)
        self.trial = self.study.ask()
        self._before = set(self._attrs())
        self.values: dict[int, float] = {}

    def _attrs(self) -> dict:
        return self.study._storage.get_trial_system_attrs(self.trial._trial_id)

    def report(self, epoch: int, value: float) -> bool:
        """Record this epoch's half-A value; True: stop the trial."""
        self.values[int(epoch)] = float(value)
        self.trial.report(float(value), int(epoch))
        return bool(self.trial.should_prune())

    def marks(self) -> dict:
        """What the pruner wrote on this trial (successive halving's completed rungs)."""
        return {k: v for k, v in self._attrs().items() if k not in self._before}


#: A worker's trial runner (and the splits it built), kept across the trials of one comparison.
_WORKER_RUNNERS: dict[str, TrialRunner] = {}


def _kept(runner):
    """In a worker, the runner of this comparison received first (its splits already built)."""
    if not isinstance(runner, TrialRunner) or not runner._shipped:
        return runner
    if runner.cache_key not in _WORKER_RUNNERS:
        _WORKER_RUNNERS.clear()
        _WORKER_RUNNERS[runner.cache_key] = runner
    return _WORKER_RUNNERS[runner.cache_key]


def trial_job(runner, values: dict, resume: bool = False) -> dict:
    """One trial, as an executor job's work (``functools.partial(trial_job, runner)``): runs
    ``runner(candidate, params, report)`` with pruning decided by a :class:`SnapshotPruner`
    over ``values["snapshot"]``; returns the trial's state (``complete``, ``pruned``), score,
    details, per-epoch values, the pruner's marks, its seconds and torch threads. A setting
    that fails raises (the executor reports it)."""
    import torch

    t0 = time.perf_counter()
    runner = _kept(runner)
    device = values.get("device") or worker_device()
    if device and isinstance(runner, TrialRunner):
        runner.device = device
    judge = SnapshotPruner(values["pruner"], values["snapshot"])
    out: dict[str, Any] = {"state": "complete", "score": None, "details": {}, "message": ""}
    try:
        outcome = runner(values["candidate"], values["params"], judge.report)
    except Pruned as exc:
        out.update(state="pruned", message=str(exc))
    else:
        out.update(score=float(outcome.score), details=dict(outcome.details))
    out.update(intermediate=dict(judge.values), marks=judge.marks(), seconds=time.perf_counter() - t0,
               threads=torch.get_num_threads())
    return out


# ------------------------------------------------------------------ trials in flight
@dataclass
class Search:
    """One candidate's study while its trials run: ``trials`` is its budget."""

    study: Any
    candidate: Candidate
    space: Sequence[Param]
    trials: int
    #: job key -> (the asked trial, when it was submitted)
    running: dict[str, tuple[Any, float]] = field(default_factory=dict)
    ran: dict[str, int] = field(default_factory=lambda: {"complete": 0, "pruned": 0, "failed": 0})
    #: the most trials of this study in flight at once in this session
    most: int = 0
    #: the workers' seconds over this session's trials
    seconds: float = 0.0

    @functools.cached_property
    def distributions(self) -> dict:
        return {p.key: p.distribution() for p in self.space}


def run_searches(searches: Sequence[Search], runner, executor, *, slots: int = 1,
                 say: Callable[[str], None] = lambda _m: None) -> None:
    """Ask/tell every study until its trials count against its budget (:func:`counted`),
    each trial a job of ``executor`` (work ``functools.partial(trial_job, runner)``; for a
    process pool or Ray, ``runner`` must be picklable), with up to ``slots`` trials in
    flight across the studies: a free slot goes to the open study with the fewest in flight,
    then the fewest trials counted or in flight, then the first given. Only this process
    opens the studies. Interrupted (Ctrl-C, an error here), the trials in flight are marked
    FAIL (``failed: interrupted``) and the exception goes on."""
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
    from optuna.trial import TrialState

    work = functools.partial(trial_job, runner)
    owner: dict[str, Search] = {}

    def fill() -> list[Job]:
        jobs: list[Job] = []
        done = {id(s): counted(s.study) for s in searches}
        while sum(len(s.running) for s in searches) < slots:
            open_ = [s for s in searches if done[id(s)] + len(s.running) < s.trials]
            if not open_:
                break
            s = min(open_, key=lambda s: (len(s.running), done[id(s)] + len(s.running)))
            trial = s.study.ask(s.distributions)
            trial.set_user_attr("driver", _driver_id())
            key = f"{s.candidate.name}/trial-{trial.number}"
            values = {"candidate": s.candidate, "params": dict(trial.params), "pruner": s.study.pruner,
                      "snapshot": study_snapshot(s.study)}
            s.running[key] = (trial, time.perf_counter())
            s.most = max(s.most, len(s.running))
            owner[key] = s
            jobs.append(Job(key, values, label=f"{s.candidate.label} trial {trial.number}", work=work))
        return jobs

    def on_finish(outcome: Outcome) -> list[Job]:
        s = owner.pop(outcome.key)
        trial, t0 = s.running.pop(outcome.key)
        _tell(s, trial, outcome, time.perf_counter() - t0, say)
        return fill()

    first = fill()
    if not first:
        return
    try:
        executor.run(first, on_finish)
    except BaseException:
        for s in searches:
            for trial, _t0 in s.running.values():
                try:
                    s.study._storage.set_trial_user_attr(trial._trial_id, "failed", _INTERRUPTED)
                    s.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                except Exception:  # noqa: BLE001 - left RUNNING: the next run's fail_orphans marks it
                    pass
        raise


def _tell(s: Search, trial, outcome: Outcome, seconds: float, say: Callable[[str], None]) -> None:
    """Report a finished trial job to its study: per-epoch values, the pruner's marks, state."""
    from optuna.trial import TrialState

    study, label = s.study, s.candidate.label
    v = outcome.value if outcome.status == "done" and isinstance(outcome.value, dict) else None
    if v is None:
        why = outcome.error or outcome.status
        trial.set_user_attr("failed", why)
        trial.set_user_attr("seconds", seconds)
        study.tell(trial, state=TrialState.FAIL)
        s.ran["failed"] += 1
        s.seconds += seconds
        say(f"  {label} trial {trial.number}: FAILED ({why})")
        return
    for step, value in sorted(v["intermediate"].items()):
        trial.report(value, step)
    for k, mark in v["marks"].items():
        study._storage.set_trial_system_attr(trial._trial_id, k, mark)
    trial.set_user_attr("seconds", v["seconds"])
    trial.set_user_attr("threads", v["threads"])
    s.seconds += v["seconds"]
    if v["state"] == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        s.ran["pruned"] += 1
        say(f"  {label} trial {trial.number}: {v['message']}")
        return
    for k, detail in v["details"].items():
        trial.set_user_attr(k, detail)
    study.tell(trial, v["score"])
    s.ran["complete"] += 1
    say(f"  {label} trial {trial.number}: half A {100 * v['score']:.1f}")


def run_trials(study, candidate: Candidate, space: Sequence[Param], trials: int, runner,
               say: Callable[[str], None] = lambda _m: None, *, executor=None, slots: int = 1) -> dict:
    """One study's trials (:func:`run_searches`): until ``trials`` count against the budget;
    ``runner(candidate, params, report) -> TrialOutcome`` (raises :class:`Pruned` when
    ``report`` says so); ``executor`` default: this process, one trial at a time. Returns
    this session's trials by state."""
    search = Search(study, candidate, space, trials)
    run_searches([search], runner, executor or LocalExecutor(1), slots=slots, say=say)
    return search.ran


def record_session(study, ran: dict, *, finished: bool, in_flight: int = 1) -> None:
    """Append this session to the study's record: driver, trials run, finished, the most
    trials in flight at once."""
    sessions = list(study.user_attrs.get("sessions") or [])
    sessions.append({"driver": _driver_id(), "trials": sum(ran.values()), "finished": finished,
                     "in_flight": in_flight})
    study.set_user_attr("sessions", sessions)


def study_report(study, point: dict) -> dict:
    """Trials by state, the chosen trial and whether the study reproduces from its seed."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    by = {s: [t for t in trials if t.state == s] for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    interrupted = [t for t in by[TrialState.FAIL] if t.user_attrs.get("failed") == _INTERRUPTED]
    sessions = list(study.user_attrs.get("sessions") or [])
    best = best_trial(study)
    default = next((t for t in trials if t.user_attrs.get("default") and t.state == TrialState.COMPLETE), None)
    return {
        "study": study.study_name,
        "trials": {"complete": len(by[TrialState.COMPLETE]), "pruned": len(by[TrialState.PRUNED]),
                   "failed": len(by[TrialState.FAIL]) - len(interrupted), "interrupted": len(interrupted)},
        "chosen_trial": None if best is None else best.number,
        "chosen_params": None if best is None else dict(best.params),
        "chosen_half_a": None if best is None else best.value,
        "default_params": dict(point),
        "default_half_a": None if default is None else default.value,
        "sessions": len(sessions),
        # same seed, same trials: one session, never interrupted, one trial in flight at a time
        "reproducible": (len(sessions) == 1 and bool(sessions[0].get("finished")) and not interrupted
                         and int(sessions[0].get("in_flight", 1)) <= 1),
        "in_flight": max((int(x.get("in_flight", 1)) for x in sessions), default=0),
        "history": [{"number": t.number, "state": t.state.name, "value": t.value if t.state == TrialState.COMPLETE
                     else None, "params": dict(t.params), "default": bool(t.user_attrs.get("default")),
                     "epochs_run": t.user_attrs.get("epochs_run"),
                     "last_epoch": max(t.intermediate_values) if t.intermediate_values else None,
                     "failed": t.user_attrs.get("failed")} for t in trials],
    }


# ------------------------------------------------------------------ the verdict (half B only)
@dataclass(frozen=True)
class TunedVerdict:
    selected: str | None
    scores: dict[str, float]          # candidate -> mean half-B accuracy of its chosen setting
    within_tolerance: list[str]
    best_unimodal: str | None
    fused_below_best_unimodal: bool


def tuned_verdict(method_b: Mapping[str, Sequence[float | None]], unimodal_b: Mapping[str, Sequence[float | None]],
                  tolerance: float, seeds: int) -> TunedVerdict:
    """Select on half B only: the best mean half-B accuracy over seeds (every seed finished),
    methods within ``tolerance`` of it go to the simplest (``tie_rank``); the check against
    the best modality alone compares half-B means too."""
    def mean(vals):
        v = [x for x in vals if x is not None]
        return sum(v) / len(v) if len(v) == seeds and v else None

    scores = {m: s for m, vals in method_b.items() if (s := mean(vals)) is not None}
    uni = {m: s for m, vals in unimodal_b.items() if (s := mean(vals)) is not None}
    if not scores:
        return TunedVerdict(None, {}, [], max(uni, key=lambda m: uni[m]) if uni else None, False)
    top = max(scores.values())
    tied = sorted((m for m, s in scores.items() if s >= top - tolerance - 1e-12), key=lambda m: (tie_rank(m), m))
    selected = tied[0]
    best_uni = max(uni, key=lambda m: uni[m]) if uni else None
    below = best_uni is not None and scores[selected] < uni[best_uni]
    return TunedVerdict(selected, scores, tied, best_uni, below)


# ------------------------------------------------------------------ final runs
def final_runs(out: Path, base: TrainConfig, candidate: Candidate, params: Mapping[str, Any], seeds: Sequence[int],
               protocol: Protocol, prefix: str) -> list[tuple[str, TrainConfig]]:
    """``(key, config)`` of the runs that score one setting on half B: one per seed (and fold)."""
    runs = []
    selections = protocol.selections(holdout=True)
    for seed in seeds:
        for selection in selections:
            rel = f"{prefix}{candidate.name}/seed-{seed}"
            if protocol.folds:
                rel += f"/fold-{selection['fold']}"
            cfg = apply_params(run_config(base, candidate.planned(seed), out), params).replace(val_selection=selection, out=str(out / rel),
                                                     name=f"{candidate.label} seed {seed}" + (f" fold {selection['fold']}" if protocol.folds else ""))
            runs.append((rel, cfg))
    return runs


def _stale(run_dir: Path, cfg: TrainConfig) -> bool:
    """A run directory trained with other settings (the chosen setting changed)."""
    path = run_dir / CONFIG
    if not path.is_file():
        return False
    try:
        old = TrainConfig.load(path)
    except (ValueError, TypeError, OSError):
        return True
    return bool(old.differences(cfg))


def execute_runs(runs: Sequence[tuple[str, TrainConfig]], executor, say: Callable[[str], None]) -> dict[str, str]:
    """Train what is not finished (stale directories cleared); ``{key: error}`` of failures."""
    import shutil

    jobs = []
    for key, cfg in runs:
        run_dir = Path(cfg.out or "")
        if _stale(run_dir, cfg):
            shutil.rmtree(run_dir)
        state = run_state(run_dir)
        if state == "done":
            continue
        if state == "restart":
            shutil.rmtree(run_dir)
        # the folders above the run (default/<candidate>, <candidate>/seed-<k> of a fold) exist before any
        # worker looks: a Ray task checks that it sees the directory two levels above its run
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        jobs.append(Job(key, cfg.to_dict(), resume=state == "resume", label=key))
    failed: dict[str, str] = {}

    def done(o: Outcome) -> None:
        if o.status != "done":
            failed[o.key] = o.error or o.status
            say(f"  {o.key}: FAILED ({o.error})")

    if jobs:
        executor.run(jobs, done)
    return failed


def read_scores(runs: Sequence[tuple[str, TrainConfig]], seeds: Sequence[int], protocol: Protocol) -> dict:
    """Per seed (mean over folds): half-A, half-B and test accuracy; None where unfinished."""
    per: dict[int, dict[str, list]] = {s: {"a": [], "b": [], "test": []} for s in seeds}
    for _key, cfg in runs:
        path = Path(cfg.out or "") / RESULTS
        res = json.loads(path.read_text()) if path.is_file() else None
        row = per[cfg.seed]
        row["a"].append(((res or {}).get("val") or {}).get("acc"))
        row["b"].append(((res or {}).get("holdout") or {}).get("acc"))
        row["test"].append(((res or {}).get("test") or {}).get("acc"))

    def mean(v):
        return None if not v or any(x is None for x in v) else sum(v) / len(v)

    return {k: [mean(per[s][k]) for s in seeds] for k in ("a", "b", "test")}


def _mean(vals) -> float | None:
    v = [x for x in vals if x is not None]
    return sum(v) / len(v) if v else None


# ------------------------------------------------------------------ the tuned comparison
def tune_comparison(base: TrainConfig, out: Path, *, methods: Sequence[str], modalities: Sequence[str],
                    seeds: Sequence[int], trials: int, tune_shared: str = "schedule", cv: int | None = None,
                    storage: str | None = None, pruner: str = "median", tune_seed: int = 0,
                    tie_tolerance: float = 0.005, jobs: int | None = None, executor=None,
                    runner=None, say: Callable[[str], None] = print,
                    method_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Tune every candidate, run each chosen setting and each default for every seed, score
    them on half B, and return the tuned summary (also written to ``out/tuning.json``)."""
    from ..data import build_datasets
    from ..factory import default_builder

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"tune must be a number of trials >= 1, got {trials!r}")
    if tune_shared not in SHARED_CHOICES:
        raise ValueError(f"tune_shared must be one of {list(SHARED_CHOICES)}, got {tune_shared!r}")
    out.mkdir(parents=True, exist_ok=True)
    first = run_config(base, PlannedRun("normal", seeds[0]), out)
    data = build_datasets(first)
    val_n = None if data.val is None else len(data.val)
    protocol = Protocol(seed=component_seed(tune_seed, "val-halves") % 2**31, folds=choose_folds(cv, val_n))
    builder = default_builder(first, data.modalities)
    url = storage or f"sqlite:///{(out / DEFAULT_DB).resolve()}"
    fixed = method_options or {}
    candidates = ([Candidate(m, options=tuple(sorted(fixed.get(m, {}).items()))) for m in methods]
                  + [Candidate("normal", m) for m in modalities])
    if executor is None:
        auto, threads, devices = default_jobs(base)
        executor = LocalExecutor(min(jobs or auto, 64, len(devices) if devices else 64), threads=threads,
                                 devices=devices)
        slots = executor.jobs
    else:
        slots = jobs or (executor.capacity() if hasattr(executor, "capacity") else 1)
    if runner is None:  # trials as jobs of the executor, up to ``slots`` in flight across the candidates
        runner, trial_executor = TrialRunner(base, seeds[0], protocol), executor
    else:  # a runner given here (fabricated trials): in this process, one trial at a time
        trial_executor, slots = LocalExecutor(1), 1
    how = f"{protocol.folds}-fold cv of train + validation" if protocol.folds else "halves A/B of validation"
    say(f"tuning: {trials} trials per candidate ({len(candidates)} candidates, up to {slots} trial(s) at once), "
        f"protocol {how} (validation split: {val_n} samples), study store {url if storage else out / DEFAULT_DB}")
    report: dict[str, Any] = {"protocol": protocol.to_dict(), "trials": trials, "tune_shared": tune_shared,
                              "pruner": pruner, "storage": "default" if storage is None else "url",
                              "val_samples": val_n, "in_flight": slots, "candidates": {}}
    searches: dict[str, Search] = {}
    points: dict[str, tuple[list[Param], dict]] = {}
    for cand in candidates:
        space = candidate_space(cand.method, base, builder=builder, tune_shared=tune_shared,
                                fixed=[k for k, _ in cand.options])
        point = default_point(space, base, builder, cand.method)
        points[cand.name] = (space, point)
        if space:
            study = open_study(url, f"{cand.name}", space=space, protocol=protocol,
                               sampler_seed=component_seed(tune_seed, f"tpe/{cand.name}"), pruner=pruner)
            ensure_default(study, point)
            searches[cand.name] = Search(study, cand, space, trials)
    t0 = time.perf_counter()
    try:
        run_searches(list(searches.values()), runner, trial_executor, slots=slots, say=say)
    except BaseException:
        for search in searches.values():
            record_session(search.study, search.ran, finished=False, in_flight=max(search.most, 1))
        raise
    tuning_seconds = time.perf_counter() - t0
    for cand in candidates:
        space, point = points[cand.name]
        search_ = searches.get(cand.name)
        if search_ is not None:
            record_session(search_.study, search_.ran, finished=True, in_flight=max(search_.most, 1))
            entry = study_report(search_.study, point)
        else:
            entry = {"study": None, "trials": {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0},
                     "chosen_params": {}, "default_params": {}, "chosen_half_a": None, "default_half_a": None,
                     "reproducible": True, "in_flight": 0, "sessions": 0, "history": [], "chosen_trial": None}
        entry["space"] = {p.key: {**p.to_dict(), "source": p.source} for p in space}
        # the workers' seconds over this session's trials (the wall time of tuning is seconds.tuning)
        entry["tuning_seconds"] = 0.0 if search_ is None else search_.seconds
        report["candidates"][cand.name] = entry

    # the chosen setting and the default of every candidate, every seed, scored on half B
    all_runs: list[tuple[str, TrainConfig]] = []
    plans: dict[str, dict[str, list]] = {}
    for cand in candidates:
        entry = report["candidates"][cand.name]
        chosen = entry["chosen_params"] if entry["chosen_params"] is not None else entry["default_params"]
        tuned = final_runs(out, base, cand, chosen, seeds, protocol, prefix="")
        default = tuned if chosen == entry["default_params"] else final_runs(out, base, cand, entry["default_params"], seeds,
                                                                      protocol, prefix="default/")
        plans[cand.name] = {"tuned": tuned, "default": default}
        all_runs += tuned + ([] if default is tuned else default)
    say(f"tuning done; {len(all_runs)} runs of the chosen and default settings ({len(seeds)} seeds)")
    t0 = time.perf_counter()
    failed = execute_runs(all_runs, executor, say)
    final_seconds = time.perf_counter() - t0
    for cand in candidates:
        entry = report["candidates"][cand.name]
        tuned_or_default = entry["chosen_params"] if entry["chosen_params"] is not None else entry["default_params"]
        for which in ("tuned", "default"):
            scores = read_scores(plans[cand.name][which], seeds, protocol)
            entry[which] = {"params": tuned_or_default if which == "tuned" else entry["default_params"], **scores,
                            "runs": [k for k, _ in plans[cand.name][which]],
                            "mean_b": _mean(scores["b"]), "mean_test": _mean(scores["test"]),
                            "mean_a": _mean(scores["a"])}
        t = entry["tuned"]
        # optimism: what half A said of the chosen setting minus what half B says
        entry["optimism"] = (None if entry["chosen_half_a"] is None or t["mean_b"] is None
                             else entry["chosen_half_a"] - t["mean_b"])
        entry["optimism_epoch"] = (None if t["mean_a"] is None or t["mean_b"] is None else t["mean_a"] - t["mean_b"])
    by = report["candidates"]
    methods_b = {c.name: by[c.name]["tuned"]["b"] for c in candidates if c.modality is None}
    uni_b = {c.modality: by[c.name]["tuned"]["b"] for c in candidates if c.modality is not None}
    verdict = tuned_verdict(methods_b, uni_b, tie_tolerance, len(seeds))
    default_verdict = tuned_verdict({c.name: by[c.name]["default"]["b"] for c in candidates if c.modality is None},
                                    {c.modality: by[c.name]["default"]["b"] for c in candidates
                                     if c.modality is not None}, tie_tolerance, len(seeds))
    report["verdict"] = verdict.__dict__
    report["default_verdict"] = default_verdict.__dict__
    report["failed"] = failed
    report["seconds"] = {"tuning": tuning_seconds, "final_runs": final_seconds}
    report["reproducible"] = all(e["reproducible"] for e in by.values())
    report["seeds"] = list(seeds)
    (out / TUNING_JSON).write_text(json.dumps(_clean(report), indent=2) + "\n")
    return report


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def tuned_markdown(report: dict, data: str) -> str:
    """summary.md of a tuned comparison: default vs tuned per candidate, the verdict on half B."""
    v, dv = report["verdict"], report["default_verdict"]
    proto = report["protocol"]
    how = (f"{proto['folds']}-fold cross-validation of train + validation (group-aware; halves A/B inside each fold)"
           if proto["folds"] else "halves A/B of the validation split")
    lines = [f"# ogmge compare --tune {report['trials']}: {data}", "",
             f"Every candidate (Normal included) searched {report['trials']} settings with Optuna (TPE, seeded; "
             f"{report['pruner']} pruning on half-A accuracy per epoch); shared schedule "
             f"{'searched' if report['tune_shared'] == 'schedule' else 'fixed'}. Protocol: {how}; every run selects "
             "its epoch on half A; the verdict compares half B only; test reports. "
             f"Seeds {', '.join(map(str, report['seeds']))}; accuracies in percent, means over seeds.", ""]
    if v["selected"]:
        sel = report["candidates"][v["selected"]]["tuned"]
        text = (f"**Verdict (half B):** use {v['selected']} at its tuned setting: half B {_pct(v['scores'][v['selected']])}, "
                f"test {_pct(sel['mean_test'])}.")
        if len(v["within_tolerance"]) > 1:
            text += f" Within the tie tolerance: {', '.join(v['within_tolerance'])} (the simplest kept)."
        if v["fused_below_best_unimodal"]:
            text += f" WARNING: below {v['best_unimodal']} alone on half B (tuned with the same budget)."
        lines.append(text)
    else:
        lines.append("**Verdict:** no candidate finished every seed: nothing selected.")
    if dv["selected"] and dv["selected"] != v["selected"]:
        lines.append(f"With the defaults, half B would have selected {dv['selected']}.")
    lines += ["", "| candidate | default B | tuned B | default test | tuned test | tuned A (trial) | optimism A−B | "
              "trials (complete/pruned/failed) | chosen setting |", "|" + "---|" * 9]
    for name, e in report["candidates"].items():
        t, d = e["tuned"], e["default"]
        tr = e["trials"]
        chosen = "default" if e["tuned"]["params"] == e["default_params"] else ", ".join(
            f"{k}={_fmt(val)}" for k, val in e["tuned"]["params"].items())
        mark = " *" if name == v["selected"] else ""
        lines.append(f"| {name}{mark} | {_pct(d['mean_b'])} | {_pct(t['mean_b'])} | {_pct(d['mean_test'])} | "
                     f"{_pct(t['mean_test'])} | {_pct(e['chosen_half_a'])} | {_signed(e['optimism'])} | "
                     f"{tr['complete']}/{tr['pruned']}/{tr['failed']} | {chosen} |")
    lines += ["", "Reproducible from the seed (every study one uninterrupted session, one trial in flight at a "
              f"time; up to {report.get('in_flight', 1)} trial(s) ran at once): "
              f"{'yes' if report['reproducible'] else 'no'}. Wall time: tuning {report['seconds']['tuning']:.0f} s, "
              f"chosen and default runs {report['seconds']['final_runs']:.0f} s."]
    if report.get("failed"):
        lines += ["", "Failed runs (rerun the same command to retry them):", ""]
        lines += [f"- {k}: {why}" for k, why in report["failed"].items()]
    return "\n".join(lines) + "\n"


def _fmt(x) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _signed(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


# ------------------------------------------------------------------ entry point
TUNE_SETTINGS = "tune.yaml"


def run_tuned(config, *, out: str | Path, methods: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2),
              trials: int, tune_shared: str = "schedule", cv: int | None = None, storage: str | None = None,
              pruner: str = "median", tune_seed: int = 0, tie_tolerance: float = 0.005, jobs: int | None = None,
              executor=None, runner=None, echo: Callable[[str], None] | None = print,
              method_options: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> dict:
    """``ogmge.compare(..., tune=TRIALS)``: settings checked and stored (``compare.yaml`` and
    ``tune.yaml``: a rerun may add methods, seeds and trials; anything else must match),
    then :func:`tune_comparison`."""
    import yaml

    from .lock import ComparisonLock
    from .lookups import known_methods
    from .plan import (
        Settings,
        base_config,
        check_method_options,
        check_methods,
        check_out,
        check_seeds,
        comparison_stopping,
        make_out,
        reconcile,
        stored_modalities,
    )

    say = echo or (lambda _m: None)
    base = base_config(config, settings)
    if base.val_fraction == 0:
        raise ValueError("val_fraction must be > 0 for a tuned compare: half A of the validation split selects")
    out = Path(out)
    if (out / "compare.yaml").is_file() and not (out / TUNE_SETTINGS).is_file():
        raise ValueError(f"{out} holds an untuned comparison; a tuned one needs its own --out")
    methods_ = check_methods(known_methods() if methods is None else methods)
    seeds_ = check_seeds(seeds)
    check_out(out)
    make_out(out)
    with ComparisonLock(out):  # one compare at a time in a directory, tuned or not
        options_ = check_method_options(method_options, methods_)
        stored_settings = Settings.load(out) if (out / "compare.yaml").is_file() else None
        methods_, seeds_ = reconcile(out, base, methods_, seeds_, options_)
        wanted = {"tune_shared": tune_shared, "cv": cv, "pruner": pruner, "tune_seed": tune_seed,
                  "storage": storage}
        path = out / TUNE_SETTINGS
        if path.is_file():
            stored = yaml.safe_load(path.read_text()) or {}
            diffs = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
            if diffs:
                detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diffs.items())
                raise ValueError(f"{out} holds a tuned comparison with other tuning settings ({detail}); only "
                                 "--methods, --seeds and a larger --tune may change. Use another --out")
        modalities = stored_modalities(out)
        if modalities is None:
            from ..data import build_datasets

            modalities = list(build_datasets(run_config(base, PlannedRun("normal", seeds_[0]), out)).modalities)
        if len(modalities) < 2:
            raise ValueError(f"compare needs at least two modalities to balance; the data has {modalities}")
        rule = comparison_stopping(out, base, modalities, stored_settings)  # the rule the comparison began with
        Settings(methods_, seeds_, modalities, base, method_options=options_, stopping=rule).save(out)
        base = base.replace(stopping=rule)
        from ...io_utils import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(wanted, sort_keys=False))
        report = tune_comparison(base, out, methods=methods_, modalities=modalities, seeds=seeds_, trials=trials,
                                 tune_shared=tune_shared, cv=cv, storage=storage, pruner=pruner, tune_seed=tune_seed,
                                 tie_tolerance=tie_tolerance, jobs=jobs, executor=executor, runner=runner, say=say,
                                 method_options=options_)
        report["data"] = base.data or base.dataset
        report["tuned"] = True
        atomic_write_text(out / "summary.json", json.dumps(_clean(report), indent=2) + "\n")
        atomic_write_text(out / "summary.md", tuned_markdown(report, str(report["data"])))
        return report


__all__ = ["CV_BELOW", "DEFAULT_FOLDS", "PRUNERS", "SHARED_SPACE", "Candidate", "Param", "Protocol", "Pruned",
           "Search", "SnapshotPruner", "SpaceChanged", "TrialRunner", "TunedVerdict", "best_trial", "candidate_space",
           "choose_folds", "default_point", "ensure_default", "fail_orphans", "make_pruner", "method_params",
           "open_study", "run_searches", "run_trials", "run_tuned", "study_report", "study_snapshot", "trial_job",
           "tune_comparison", "tuned_markdown", "tuned_verdict"]
