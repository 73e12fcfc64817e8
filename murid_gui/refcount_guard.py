"""Keep True, False and None alive whatever PySide6 does to their reference counts.

Measured with PySide6 6.12.0 on CPython 3.11: every ``SignalInstance.emit`` (any signal, any
arguments, with or without a slot) leaves True with one reference fewer, and a model/view
session loses references to None; after some thousands of emits CPython aborts with
"bool_dealloc: deallocating True or False" (or none_dealloc). A training session emits
several signals a second, so the app would die within hours, and a long test run died at
exit. CPython 3.12 made these singletons immortal (PEP 683: a reference count so large it never
reaches zero); on older versions we give them such a count once, which is what 3.12 does.
"""

from __future__ import annotations

import ctypes
import sys

_LOTS = 1 << 40  # more references than a program can lose in any session


def make_singletons_immortal() -> bool:
    """True when the counts were raised (CPython before 3.12); otherwise nothing to do."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    for obj in (True, False, None):
        # ob_refcnt is a CPython object's first field (Py_ssize_t) in release builds.
        ctypes.c_ssize_t.from_address(id(obj)).value += _LOTS
    return True
