"""Corpus reader tests."""

import pytest

# The shared checks in helpers.py are asserts; have pytest explain their failures too.
pytest.register_assert_rewrite(f"{__name__}.helpers")
