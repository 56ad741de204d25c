"""Which directories a run may write to.

A run directory carries the marker file ``ogmge-run.json`` (written before
anything else), which makes it "one of ours". A new run (not ``--resume``)
writes only into a directory that does not exist, is empty, or -- with
``overwrite`` (``ogmge train --overwrite``, the flag ``ogmge demo`` shares) -- is
one of ours, which is then emptied. Everything else is refused with a message
saying what is there and what to do:

* a path that is a file, or a directory that cannot be written;
* a non-empty directory without the marker (user files): never touched;
* one of ours that holds a run (``last.pt``): resume it, or start over;
* one of ours left by a run that stopped before its first checkpoint
  (no ``last.pt``): nothing to resume; start over or choose another directory.

Directories written before the marker existed count as ours when they hold ``last.pt``;
a directory holding only the marker (a run refused or killed before writing anything
else) counts as empty. The checks run before the data are loaded; the directory is
created, and the marker written, once the data have passed theirs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ogmge.io_utils import TMP_TAG, atomic_write_text

from .checkpoint import LAST

MARKER = "ogmge-run.json"
MARKER_FORMAT = "ogmge-run"


class RunDirError(FileExistsError, ValueError):
    """A directory a new run may not use (a FileExistsError, and a ValueError for the CLI)."""


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory of ogmge (marker file, or an older run's ``last.pt``)."""
    path = Path(path)
    return (path / MARKER).is_file() or (path / LAST).is_file()


def _listing(path: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in path.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _leftovers_only(path: Path) -> bool:
    """Only the marker (or its temporary file): a run that stopped before writing anything else."""
    return all(p.name == MARKER or p.name.startswith(f".{MARKER}{TMP_TAG}") for p in path.iterdir())


def check_new_run_dir(path: str | Path, *, overwrite: bool = False) -> Path:
    """Raise a RunDirError (naming the directory and the way out) unless a new run may use
    ``path``; changes nothing on disk."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a directory; choose a directory for the run")
    if path.is_dir() and not _leftovers_only(path):
        if not is_run_dir(path):
            raise RunDirError(
                f"--out {path} is not empty ({_listing(path)}) and is not an ogmge run directory (no {MARKER}); "
                "refusing to write into it: choose a new or empty directory"
            )
        if not overwrite:
            if (path / LAST).is_file():
                raise RunDirError(
                    f"{path} already holds a run ({LAST}); continue it with --resume {path}, start over "
                    "with --overwrite (deletes it), or choose another --out"
                )
            raise RunDirError(
                f"{path} holds a run that stopped before its first checkpoint ({_listing(path)}; no {LAST}), "
                f"so there is nothing to resume; start over with --overwrite (deletes it) or choose another --out"
            )
    return path


def prepare_new_run_dir(path: str | Path, *, overwrite: bool = False) -> Path:
    """``check_new_run_dir``, then empty it (``overwrite``, ours only), create it and write the marker."""
    path = check_new_run_dir(path, overwrite=overwrite)
    if path.is_dir() and any(path.iterdir()):  # ours: an earlier run, or only a marker left behind
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_marker(path)
    except OSError as exc:
        raise RunDirError(f"cannot write the run directory --out {path}: {exc.strerror or exc}") from None
    return path


def write_marker(path: Path) -> None:
    atomic_write_text(path / MARKER, json.dumps({"format": MARKER_FORMAT, "version": 1}) + "\n")


def check_resume_dir(path: str | Path) -> Path:
    """A directory ``--resume`` may continue: one of ours, writable."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"cannot resume: run directory {path} does not exist")
    if not is_run_dir(path):
        raise ValueError(f"cannot resume {path}: it is not an ogmge run directory (no {MARKER} or {LAST})")
    if not os.access(path, os.W_OK):
        raise ValueError(f"cannot resume {path}: the directory is not writable")
    return path
