"""Fixtures of the fine-tune tests (the corpus and model fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: runs compare bit for bit, and 2 cores are not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
