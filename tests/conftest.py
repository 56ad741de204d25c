import pytest
import torch


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
