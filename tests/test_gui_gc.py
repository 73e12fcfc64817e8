"""The garbage collector frees reference cycles on the GUI thread only (murid_gui.gui_gc)."""

from __future__ import annotations

import gc
import threading

import gui_helpers  # noqa: F401 - offscreen, one thread


class _Cycle:
    """A reference cycle that notes the thread it was freed on (where a dead Qt object's C++
    destructor would run)."""

    def __init__(self, freed_on: list) -> None:
        self.me = self
        self.freed_on = freed_on

    def __del__(self) -> None:
        self.freed_on.append(threading.current_thread())


def test_the_workers_start_up_frees_nothing_on_its_own_thread(qtbot):
    from murid_gui.app import make_app
    from murid_gui.worker import JobRunner

    make_app()
    assert not gc.isenabled()  # the app's own collector, on the GUI thread, took over
    freed_on: list = []
    _Cycle(freed_on)
    runner = JobRunner()  # its warm-up on the worker thread used to call gc.collect() there
    try:
        qtbot.waitUntil(lambda: runner.preloaded, timeout=120000)
    finally:
        runner.shutdown()
    assert freed_on == [threading.main_thread()]  # freed by the full collection after the warm-up


def test_a_thread_that_allocates_a_lot_collects_nothing_and_the_gui_timer_does(qtbot):
    from murid_gui.app import make_app
    from murid_gui.gui_gc import INTERVAL_MS

    make_app()
    gc.collect()
    freed_on: list = []
    _Cycle(freed_on)
    kept: list = []  # alive: a collection is due by count (allocations less deallocations)
    # Far past the first generation's threshold: with automatic collection on, this thread
    # would have collected the cycle.
    busy = threading.Thread(target=lambda: kept.extend([] for _ in range(20 * gc.get_threshold()[0])))
    busy.start()
    busy.join()
    assert freed_on == [] and gc.get_count()[0] > gc.get_threshold()[0]
    qtbot.waitUntil(lambda: bool(freed_on), timeout=3 * INTERVAL_MS)
    assert freed_on == [threading.main_thread()]
