"""One torch thread for these tiny-model tests: on a shared, oversubscribed CPU box two threads
ran several times slower (OpenMP barriers), and the tiny models gain nothing from a second one."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
