"""The one validation helper: messages name the field, what it must be, and the value."""

from __future__ import annotations

import numpy as np
import pytest

from ogmge.validation import InvalidType, check_choice, check_number


@pytest.mark.parametrize(
    ("kwargs", "value", "error", "message"),
    [
        ({"lo": 0, "lo_open": True}, 0.0, ValueError, "x must be a finite number > 0, got 0.0"),
        ({"lo": 0, "hi": 1, "hi_open": True}, 1.0, ValueError, r"x must be a finite number in \[0, 1\), got 1.0"),
        ({"lo": 0.5, "hi": 1, "lo_open": True}, 0.5, ValueError, r"x must be a finite number in \(0.5, 1\], got 0.5"),
        ({"hi": 3}, 4, ValueError, "x must be a finite number <= 3, got 4.0"),
        ({}, float("nan"), ValueError, "x must be a finite number, got nan"),
        ({}, "1", InvalidType, "x must be a finite number, got '1'"),
        ({}, True, InvalidType, "x must be a finite number, got True"),
        ({"integer": True, "lo": 1}, 2.5, InvalidType, "x must be an integer >= 1, got 2.5"),
        ({"integer": True, "lo": 1}, 0, ValueError, "x must be an integer >= 1, got 0"),
        ({"integer": True, "lo": 1, "unit": " (Hz)"}, -3, ValueError, r"x must be an integer >= 1 \(Hz\), got -3"),
    ],
)
def test_check_number_rejects(kwargs, value, error, message):
    with pytest.raises(error, match=message):
        check_number("x", value, **kwargs)


def test_check_number_accepts_and_converts():
    assert check_number("x", 3, lo=0) == 3.0 and isinstance(check_number("x", 3), float)
    assert check_number("x", np.int64(4), integer=True, lo=1) == 4 and type(check_number("x", np.int64(4), integer=True)) is int
    assert check_number("x", None, allow_none=True) is None
    assert check_number("x", 1.0, lo=0, hi=1) == 1.0


def test_invalid_type_is_a_type_error_and_a_value_error():
    for error in (TypeError, ValueError):
        with pytest.raises(error):
            check_number("x", "a")


def test_check_choice():
    assert check_choice("mode", "OGM", ("OGM", "OGM_GE")) == "OGM"
    assert check_choice("mode", None, ("OGM",), allow_none=True) is None
    with pytest.raises(ValueError, match=r"mode must be one of \['OGM', 'OGM_GE'\], got 'ogm'"):
        check_choice("mode", "ogm", ("OGM", "OGM_GE"))
    with pytest.raises(ValueError, match=r"select must be one of \['conv'\] or None or a callable, got 3"):
        check_choice("select", 3, ["conv"], allow_none=True, also=" or a callable")
    with pytest.raises(ValueError, match=r"got \[1\]"):
        check_choice("select", [1], {"a": 1})
