"""Run logs: per-epoch metrics and per-step trace (JSONL), text log, TensorBoard.

Files in a run directory:

* ``metrics.jsonl`` -- one line per epoch: ``epoch`` (0-based), ``lr``,
  ``train/...``, ``val/...``, ``test/...`` (see ``metrics.evaluate``), ``best``;
* ``trace.jsonl`` -- one line per optimiser step (every ``trace_every``):
  ``epoch``, ``step`` (global), ``loss``, ``score/<m>``, ``ratio/<m>``,
  ``coeff/<m>``, ``modulated``, ``skip_reason``;
* ``train.log`` -- the text log; ``tb/`` -- TensorBoard events (``--tensorboard``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ogmge.io_utils import atomic_write_text, flush_and_sync

LOGGER = logging.getLogger("ogmge.training")
METRICS = "metrics.jsonl"
TRACE = "trace.jsonl"
TEXT_LOG = "train.log"
RESULTS = "results.json"
CONFIG = "config.yaml"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return rows


def truncate_jsonl(path: Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite ``path`` (atomically) with only the rows ``keep`` accepts (used on resume)."""
    if path.is_file():
        rows = [r for r in read_jsonl(path) if keep(r)]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


@dataclass(frozen=True)
class Choice:
    """A trace value decided on the device: ``if_true`` when the 0-d ``flag`` is true, else
    ``if_false`` (which may be another Choice); resolved at the next flush, not per step."""

    flag: Tensor
    if_true: Any
    if_false: Any


def _tensors(value, found: list[Tensor]) -> None:
    if isinstance(value, Tensor):
        found.append(value)
    elif isinstance(value, Choice):
        found.append(value.flag)
        _tensors(value.if_true, found)
        _tensors(value.if_false, found)


def _resolve(value, read: dict[int, float]):
    if isinstance(value, Tensor):
        return bool(read[id(value)]) if value.dtype == torch.bool else read[id(value)]
    if isinstance(value, Choice):
        return _resolve(value.if_true if read[id(value.flag)] else value.if_false, read)
    return value


def to_host(rows: list[dict]) -> list[dict]:
    """Rows whose values may be 0-d device tensors or ``Choice`` -> plain Python rows,
    with one device-to-host transfer for all of them."""
    found: list[Tensor] = []
    for row in rows:
        for value in row.values():
            _tensors(value, found)
    read: dict[int, float] = {}
    if found:
        dtype = torch.float32
        for t in found:
            if t.is_floating_point():
                dtype = torch.promote_types(dtype, t.dtype)
        device = found[0].device
        values = torch.stack([t.detach().reshape(()).to(device=device, dtype=dtype) for t in found]).tolist()
        read = {id(t): v for t, v in zip(found, values)}
    return [{k: _resolve(v, read) for k, v in row.items()} for row in rows]


class RunLog:
    """Writes the run's logs; a no-op on ranks other than 0 or without a run dir."""

    def __init__(self, run_dir: Path | None, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.run_dir = run_dir
        self.enabled = enabled and run_dir is not None
        self._metrics = self._trace = None
        self._pending: list[dict] = []
        self._handler: logging.Handler | None = None
        self.tb = None
        if not self.enabled or run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(run_dir / METRICS, "a")
        self._trace = open(run_dir / TRACE, "a")
        self._handler = logging.FileHandler(run_dir / TEXT_LOG)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOGGER.addHandler(self._handler)
        if LOGGER.level == logging.NOTSET or LOGGER.level > logging.INFO:
            LOGGER.setLevel(logging.INFO)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # pragma: no cover - tensorboard is a dev/extra dependency
                raise RuntimeError("--tensorboard needs the tensorboard package: pip install 'ogmge[tensorboard]'") from exc
            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        assert self._metrics is not None, "RunLog used after close()"
        self._metrics.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._metrics.flush()
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    if math.isfinite(value):
                        self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def step(self, row: dict) -> None:
        """Queue one trace row; 0-d tensors and ``Choice`` values stay on the device until ``flush_steps``."""
        if self.enabled:
            self._pending.append(row)

    def flush_steps(self) -> list[dict]:
        """Write the queued trace rows (one device-to-host transfer for all); return them."""
        if not self.enabled or not self._pending:
            return []
        assert self._trace is not None, "RunLog used after close()"
        rows, self._pending = to_host(self._pending), []
        self._trace.write("".join(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n" for row in rows))
        if self.tb is not None:
            for row in rows:
                for key, value in row.items():
                    if key.startswith(("coeff/", "ratio/", "score/")) or key == "loss":
                        if isinstance(value, float) and math.isfinite(value):
                            self.tb.add_scalar(f"step/{key}", value, row["step"])
        return rows

    def sync(self) -> None:
        """Write every queued row and fsync ``metrics.jsonl`` and ``trace.jsonl`` (before a checkpoint)."""
        if not self.enabled:
            return
        self.flush_steps()
        for fh in (self._metrics, self._trace):
            assert fh is not None, "RunLog used after close()"
            flush_and_sync(fh)
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.enabled and self._trace is not None:
            self.flush_steps()
        for fh in (self._metrics, self._trace):
            if fh is not None:
                fh.close()
        if self._handler is not None:
            LOGGER.removeHandler(self._handler)
            self._handler.close()
        if self.tb is not None:
            self.tb.close()
        self._metrics = self._trace = self._handler = self.tb = None
