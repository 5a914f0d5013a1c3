import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The losses run many small kernels, which extra intra-op threads only slow down on a
    shared machine; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
