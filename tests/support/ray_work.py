"""Work functions shipped to Ray workers by the Ray backend's tests (importable by them:
the tests put this folder on the workers' PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ogmge.training import TrainConfig
from ogmge.training.loop import train


def kill_once_after_first_checkpoint(values: dict, resume: bool) -> float:
    """Train; while ``kill-me`` lies beside the comparison directory and ``killed`` does not,
    SIGKILL this worker process right after epoch 0's checkpoint is written (once)."""
    beside = Path(values["out"]).parent.parent.parent  # run dir -> group -> comparison -> its folder
    flag = beside / "kill-me"
    killed = beside / "killed"

    def killer(event: str, info: dict) -> None:
        if event == "epoch_end" and info["epoch"] == 0 and flag.is_file() and not killed.exists():
            killed.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    start = time.perf_counter()
    train(TrainConfig.from_dict(values), resume=resume, callbacks=[killer])
    return time.perf_counter() - start


def record_interval(values: dict, resume: bool) -> float:
    """No training: write ``start end`` (wall clock) to ``<out>.interval`` after a short
    sleep; fail when the run's name is ``fail``."""
    out = Path(values["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    time.sleep(0.3)
    if values.get("name") == "fail":
        raise RuntimeError("planned failure")
    Path(str(out) + ".interval").write_text(f"{start} {time.time()}")
    return 0.3
