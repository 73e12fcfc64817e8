"""Python's cyclic garbage collector runs on the GUI thread only, in the app.

CPython collects on whichever thread happens to allocate past the threshold, or calls
``gc.collect()``. A collection on the worker or reader thread that frees a dead Qt object (a
timer or widget left in a reference cycle) runs its C++ destructor there, and Qt objects must
die on their own thread: the test suite deadlocked this way (the worker's start-up collection
freed the previous test's QTimer while the GUI thread built the next window, and a CI run hung
there).
So in the app automatic collection is off and a timer on the GUI thread collects instead, each
generation when CPython's own thresholds say it is due (the pattern of pyqtgraph's
``GarbageCollector``).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 1000

_collector: GuiThreadCollector | None = None


class GuiThreadCollector(QObject):
    def __init__(self, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__()
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_due)
        self.timer.start(interval_ms)

    def collect_due(self) -> int:
        """Collect the oldest generation whose count passed its threshold (and the younger ones)."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                return gc.collect(generation)
        return 0


def collect_on_gui_thread() -> GuiThreadCollector:
    """Install the collector (once per process; call it on the GUI thread, after the QApplication)."""
    global _collector
    if _collector is None:
        _collector = GuiThreadCollector()
    return _collector


def collect_and_freeze() -> None:
    """A full collection, then ``gc.freeze()``: what is alive now is never scanned again (the
    engine's ~800 modules imported by the warm-up would otherwise make every full collection
    hold the GIL for 100-200 ms). On the GUI thread, for the reason above."""
    gc.collect()
    gc.freeze()
