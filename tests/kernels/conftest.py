"""Kernel tests: torch single-threaded while they run (the reference's tiny matmuls pay for a thread
team on every call, which is slow on a loaded 2-core CI machine); restored afterwards."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
