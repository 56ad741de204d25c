"""Errors about input data, and the ``on_error`` policy shared by readers and ``prepare``."""

from __future__ import annotations

from os import PathLike

from ..validation import check_choice

ON_ERROR = ("raise", "skip")


class DataError(ValueError):
    """A bad input file (missing, empty, truncated, undecodable, wrong label/rate/shape, NaN/inf).

    ``path`` names the offending file (or clip) and ``kind`` is one of
    ``missing``, ``empty``, ``truncated``, ``undecodable``, ``label``, ``sample_rate``, ``shape``, ``non_finite``;
    for clips (:mod:`ogmge.data.clips`) also ``no_video``, ``no_audio`` and ``too_short``.
    """

    def __init__(self, path: str | PathLike | None, kind: str, message: str) -> None:
        self.path = None if path is None else str(path)
        self.kind = kind
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message} [{kind}]")

    def __reduce__(self):  # picklable across worker processes
        return (DataError, (self.path, self.kind, self.reason))


def check_on_error(value: str) -> str:
    return check_choice("on_error", value, ON_ERROR)
