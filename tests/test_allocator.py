"""The CPU allocator setting that keeps per-iteration training buffers in the heap."""

from __future__ import annotations

import sys

import pytest

from murid_engine.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_the_thresholds_and_a_second_call_is_harmless():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
