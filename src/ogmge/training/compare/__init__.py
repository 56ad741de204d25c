"""Methods x seeds on one dataset, a summary and a verdict chosen on validation (``ogmge compare``).

The documented entry point is ``ogmge.compare(...)`` (``ogmge.interfaces.compare_report``:
it runs the comparison and writes its report). This package is the engine, in four steps:

- **plan** (:mod:`.plan`): :class:`PlannedRun` s of a :class:`Plan` — every method x seed
  (``normal`` always included) and each modality alone (method ``normal``), each an
  ordinary run directory; runs may name runs they need (``PlannedRun.needs``).
  ``compare.yaml`` (:class:`Settings`) is the comparison's identity: a rerun extends
  methods and seeds and refuses any other changed setting, naming it::

      DIR/compare.yaml              the comparison's settings (a rerun must match them)
      DIR/<method>/seed-<k>/        one run (``ogmge train --out`` layout)
      DIR/only-<modality>/seed-<k>/ one modality alone
      DIR/timing.json               wall seconds per run (measured here; a cost, never a result)
      DIR/summary.json, DIR/summary.md   (written by ``ogmge.compare``)

- **execute** (:mod:`.execute`): an :class:`Executor` runs :class:`Job` s and reports an
  :class:`Outcome` each; :class:`LocalExecutor` is the process pool. A rerun skips
  finished runs (``results.json``), resumes those with a checkpoint, and clears and
  restarts those that failed before their first checkpoint.
- **summary** (:mod:`.summary`): a pure function from the runs'
  :class:`~ogmge.training.results.RunResults` to a typed :class:`Summary`.
- **select** (:mod:`.select`): ``select(summary, tolerance) -> Verdict``.

The cost estimate (:mod:`.cost`) runs the real trainer for a few steps.
"""

from __future__ import annotations

from .cost import CostEstimate, estimate_cost, estimate_run_seconds
from .execute import (
    Executor,
    Job,
    LocalExecutor,
    Outcome,
    Schedule,
    default_jobs,
    run_state,
    train_job,
)
from .lock import ComparisonLock, LockedError
from .lookups import fits_on_validation, known_methods, tie_order, tie_rank
from .plan import (
    DEFAULT_SEEDS,
    FREE_SETTINGS,
    SETTINGS,
    Plan,
    PlannedRun,
    Settings,
    SettingsError,
    base_config,
    neutral_config,
    run_config,
)
from .runner import CompareInterrupted, execute_plan, run_comparison
from .select import TIE_TOLERANCE, Verdict, select
from .summary import (
    TIMING,
    MethodEntry,
    Paired,
    RegimeLine,
    Summary,
    UnimodalEntry,
    mean_std,
    summarize,
    summarize_runs,
)

__all__ = [
    "DEFAULT_SEEDS", "FREE_SETTINGS", "SETTINGS", "TIE_TOLERANCE", "TIMING",
    "CompareInterrupted", "ComparisonLock", "CostEstimate", "Executor", "LockedError", "Job", "LocalExecutor", "MethodEntry", "Outcome", "Paired", "Plan", "PlannedRun",
    "RegimeLine", "Schedule", "Settings", "SettingsError", "Summary", "UnimodalEntry", "Verdict", "base_config",
    "default_jobs", "estimate_cost", "estimate_run_seconds", "execute_plan", "fits_on_validation", "known_methods", "mean_std",
    "neutral_config", "run_comparison", "run_config", "run_state", "select", "summarize", "summarize_runs",
    "tie_order", "tie_rank", "train_job",
]
