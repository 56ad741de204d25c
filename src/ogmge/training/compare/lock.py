"""One compare at a time in a comparison directory: ``DIR/.compare.lock``.

The lock is an exclusive ``flock`` on the file, held for the whole compare; the file
says who holds it (pid, host, start time). The kernel drops the ``flock`` when the
holder dies, however it dies, so a lock left by a dead compare is taken over
without a word. A second compare while the first runs is refused, naming the
holder. (On file systems without ``flock`` the pid in the file decides: a pid that
no longer runs on this host is a stale lock.)
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK = ".compare.lock"


class LockedError(ValueError):
    """Another compare runs in the directory."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not; one of another user does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped) holds nothing
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


class ComparisonLock:
    """``with ComparisonLock(out):`` holds ``out``'s lock (``out`` must exist)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: dict) -> LockedError:
        pid = holder.get("pid", "?")
        since = holder.get("started", "?")
        return LockedError(
            f"{self.out} is in use: another ogmge compare (pid {pid} on {holder.get('host', '?')}, started "
            f"{since}) runs there. Wait for it to finish or stop it, then rerun; if no such process runs, "
            f"delete {self.path}"
        )

    def acquire(self) -> ComparisonLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refuse(self._holder()) from None
            except OSError:  # no flock on this file system: the pid decides
                fcntl = None  # type: ignore[assignment]
        if fcntl is None:
            holder = self._holder()
            pid = holder.get("pid")
            if (isinstance(pid, int) and pid != os.getpid() and holder.get("host") == socket.gethostname()
                    and pid_alive(pid)):
                os.close(fd)
                raise self._refuse(holder)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # drops the flock; the file stays (unlinking it would race a newcomer)
        self._fd = None

    def __enter__(self) -> ComparisonLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK", "ComparisonLock", "LockedError", "pid_alive"]
