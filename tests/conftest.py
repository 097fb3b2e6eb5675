"""Shared test set-up: quiet third-party deprecation noise, deterministic seeds, tmp datasets."""
import os
import warnings

import pytest

# torch deprecates torch.jit.script, which detectron2 v0.6 uses at import time.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
# One intra-op thread per process (set before torch is imported; inherited by the tools the
# tests start as subprocesses). The tests' models are tiny, so threads buy little, while
# several processes (gloo ranks, a killed-and-resumed train_net) each spinning 2 OpenMP threads
# on 2 cores slow each other down by orders of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of a tool (seconds to a minute)")
    # Third-party deprecations we cannot act on (detectron2 v0.6 code under torch 2.14).
    for spec in (
        "ignore:`torch.jit.script` is deprecated:FutureWarning",
        "ignore:torch.meshgrid. in an upcoming release:UserWarning",
    ):
        config.addinivalue_line("filterwarnings", spec)


@pytest.fixture
def one_torch_thread():
    """torch at one intra-op thread for the test, restored after (even if OMP_NUM_THREADS was
    set otherwise): on 2 shared cores a spinning thread pool makes tiny iterations 10-100x
    slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield
