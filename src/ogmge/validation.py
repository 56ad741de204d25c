"""Validation of settings where they enter (layer 0): numbers and choices.

One helper for every constructor and config of the package, so that every bad
value fails the same way, with a message naming the field, what it must be,
and the value given: ``alpha must be a finite number > 0, got 0.0``.

A value of the wrong type raises :class:`InvalidType`, which is both a
``TypeError`` and a ``ValueError`` (callers may catch either); a value of the
right type outside its range or choices raises ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


class InvalidType(TypeError, ValueError):
    """A setting of the wrong type (a ``TypeError`` and a ``ValueError``)."""


def _bound(b: float) -> str:
    return str(int(b)) if isinstance(b, float) and b.is_integer() else str(b)


def describe_number(*, integer: bool = False, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False) -> str:
    """``"an integer >= 1"``, ``"a finite number in [0, 1)"``, ...: what a number must be."""
    text = "an integer" if integer else "a finite number"
    if lo is not None and hi is not None:
        return f"{text} in {'(' if lo_open else '['}{_bound(lo)}, {_bound(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{text} {'>' if lo_open else '>='} {_bound(lo)}"
    if hi is not None:
        return f"{text} {'<' if hi_open else '<='} {_bound(hi)}"
    return text


def check_number(
    field: str,
    value: Any,
    *,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_none: bool = False,
    unit: str = "",
):
    """``value`` if it is a number (an integer when ``integer``; never a bool; finite) within
    ``[lo, hi]`` (open ends with ``lo_open`` / ``hi_open``), as ``int`` or ``float``; ``None``
    passes with ``allow_none``. ``unit`` is appended to the description (``" (Hz)"``)."""
    if value is None and allow_none:
        return None
    want = describe_number(integer=integer, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open) + unit
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidType(f"{field} must be {want}, got {value!r}")
    value = int(value) if integer else float(value)  # type: ignore[call-overload]  # numbers.Integral/Real are not SupportsInt/SupportsFloat in typeshed
    if (
        not math.isfinite(value)
        or (lo is not None and (value < lo or (lo_open and value == lo)))
        or (hi is not None and (value > hi or (hi_open and value == hi)))
    ):
        raise ValueError(f"{field} must be {want}, got {value!r}")
    return value


def check_positive_int(field: str, value: Any) -> int:
    """``check_number(field, value, integer=True, lo=1)``: a size or a count."""
    return check_number(field, value, integer=True, lo=1)


def check_choice(field: str, value: Any, choices: Iterable, *, allow_none: bool = False, also: str = ""):
    """``value`` if it is one of ``choices`` (or ``None`` with ``allow_none``); ``also``
    describes other accepted values in the message (``" or a callable"``)."""
    if value is None and allow_none:
        return None
    options = list(choices)
    try:
        ok = value in options
    except Exception:  # a value that cannot be compared is not a choice
        ok = False
    if not ok:
        extra = (" or None" if allow_none else "") + also
        raise ValueError(f"{field} must be one of {options}{extra}, got {value!r}")
    return value


__all__ = ["InvalidType", "check_choice", "check_number", "check_positive_int", "describe_number"]
