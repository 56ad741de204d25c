"""Durable file writes shared by every layer (it imports nothing from ogmge).

``atomic_write(path, write)`` is the one way ogmge replaces a file: the
content goes to a temporary file beside ``path``, is flushed and fsynced, then
renamed over ``path`` with ``os.replace`` and the directory is fsynced. A crash
at any point leaves either the old file or the new one, never a mix, and the
temporary file of a failed write is removed. A write that fails for lack of space
(or any OSError, also one a writer such as ``torch.save`` wraps in another exception)
raises an OSError naming ``path``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

#: Prefix of the temporary files (they are named ``.<name>.tmp-<pid>``).
TMP_TAG = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new file in directory ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flush_and_sync(fh: IO) -> None:
    """Flush Python's buffer of an open file and fsync it to disk."""
    fh.flush()
    os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically and durably; ``write(fh)`` fills a binary file handle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            flush_and_sync(fh)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = os_error_of(exc)
        if cause is not None and (cause is not exc or cause.filename is None):
            # e.g. torch's zip writer turns a full disk into "RuntimeError: unexpected pos"
            raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from exc
        raise
    fsync_dir(path.parent)
    return path


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError ``exc`` is, or was raised from or while handling (a writer's wrapper), else None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))
