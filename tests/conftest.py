import logging
import os

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

#: Property tests (tests/modulation/test_properties.py): derandomized, so every run tries
#: the same examples; few of them, and no per-example deadline (CPU time is shared).
settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    """Tests use tiny tensors: one intra-op thread is faster than two and does not
    oversubscribe the two cores that parallel test workers share. Seeded for
    any test that forgets its own generator."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Whatever a test sets in ``os.environ`` (the CLI's ``--plugin`` passes its modules on
    to worker processes through ``$OGMGE_PLUGINS``) ends with the test: later tests' child
    processes must not try to import another test's plug-in."""
    before = dict(os.environ)
    yield
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)
    # the CLI's log handler writes to the stderr of the test that ran the CLI (pytest's
    # capture, closed after it): removed, so that later tests' log lines do not fail on it
    logger = logging.getLogger("ogmge.training")
    for handler in list(logger.handlers):
        if getattr(handler, "_ogmge_cli", False):
            logger.removeHandler(handler)
