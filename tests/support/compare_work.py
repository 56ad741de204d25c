"""Stand-ins for a comparison's training work (``LocalExecutor(work=...)``), importable by
spawned workers: they record that they started and then wait, so a test can interrupt or
kill the compare while runs are under way."""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Directory where each started job writes ``<pid>-<run name>``.
LOG_ENV = "OGMGE_TEST_WORK_LOG"


def sleepy_work(values: dict, resume: bool) -> float:
    """Record the start (pid and run directory), then sleep two minutes."""
    log = Path(os.environ[LOG_ENV])
    name = Path(values["out"]).parent.name + "-" + Path(values["out"]).name
    (log / f"{os.getpid()}-{name}").write_text(values["out"])
    time.sleep(120)
    return 120.0


def started(log: Path) -> list[tuple[int, str]]:
    """``(pid, run)`` of every job that started."""
    return [(int(p.name.split("-", 1)[0]), p.name.split("-", 1)[1]) for p in log.iterdir()]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
