"""The shared contract, over every registered method (tests/support/method_contract.py)."""

from __future__ import annotations

import pytest

from ogmge import methods
from support import method_contract as contract

NAMES = methods.names()


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_defaults_with_a_plain_state(name, tmp_path):
    contract.check_builds_from_defaults(name, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_are_refused_naming_option_and_value(name):
    contract.check_bad_options_are_refused(name)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_changes_parameters(name, tmp_path):
    contract.check_one_step_changes_parameters(name, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_resume_is_exact_trace_keys_stay_and_eval_equals_predict(name, tmp_path):
    contract.check_resume_eval_and_trace(name, tmp_path)
