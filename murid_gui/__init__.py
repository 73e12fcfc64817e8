"""MURID Studio desktop app: PySide6 + pyqtgraph views over the engine; owns no training logic."""

from .refcount_guard import make_singletons_immortal

make_singletons_immortal()  # before any signal is emitted (see refcount_guard)
