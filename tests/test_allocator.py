"""The CPU allocator setting that keeps per-iteration training buffers in the heap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from murid_engine.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]

# In a fresh process (the setting is per process and cannot be undone): malloc and free a 64 MiB
# block before and after keep_freed_memory(), reading glibc's own counters (mallinfo2, glibc >= 2.33).
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    from murid_engine.allocator import keep_freed_memory
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        libc.mallinfo2.restype = Info
    except AttributeError:
        print(json.dumps(None)); sys.exit(0)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def trial(size=64 << 20):
        before = libc.mallinfo2(); block = libc.malloc(size); held = libc.mallinfo2()
        libc.free(block); after = libc.mallinfo2()
        return {"mmapped": held.hblkhd - before.hblkhd, "in_heap": held.uordblks - before.uordblks,
                "heap_shrank": held.arena - after.arena}
    first = trial()
    calls = [keep_freed_memory(), keep_freed_memory()]
    print(json.dumps({"default": first, "calls": calls, "kept": trial()}))
""")

SIZE = 64 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_large_block_comes_from_the_heap_and_stays_there_after_free():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    seen = json.loads(out.stdout)
    if seen is None:
        pytest.skip("this libc has no mallinfo2 to read the allocator's counters")
    # glibc's default: a 64 MiB block is its own mmap, given back to the system when freed.
    assert seen["default"]["mmapped"] >= SIZE and seen["default"]["in_heap"] < SIZE
    assert seen["calls"] == [True, True]  # a second call is harmless
    # After the call: the block is carved from the heap, and freeing it does not shrink the heap,
    # so the next iteration's buffers reuse those pages instead of faulting in fresh ones.
    assert seen["kept"]["mmapped"] == 0
    assert seen["kept"]["in_heap"] >= SIZE and seen["kept"]["heap_shrank"] == 0


def test_off_linux_the_call_says_it_does_not_apply(monkeypatch):
    import murid_engine.allocator as allocator

    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert keep_freed_memory() is False
