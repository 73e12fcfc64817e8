"""The worker thread: rate-limited events, a failing job leaves the app usable, stop checkpoints."""

from __future__ import annotations

import threading
import time

import numpy as np
from gui_helpers import close_window, make_window, synth
from PySide6.QtCore import Qt

from murid_engine.errors import UserError
from murid_engine.jobs import Losses, Preview, Progress, StageStarted
from murid_engine.project import Project


def _preview(i: int) -> Preview:
    return Preview("adapt", i, ("a",), np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8),
                   np.zeros((1, 4, 4), np.float32))


def test_sink_rate_limits_previews_and_coalesces_losses(qtbot):
    from murid_gui.worker import JobRunner

    runner = JobRunner()
    got, batches, threads = [], [], []
    runner.event.connect(lambda e: (got.append(e), threads.append(threading.current_thread())))
    runner.losses.connect(batches.append)
    sent = []

    def job(sink, control):
        sink(StageStarted("adapt"))
        for i in range(1, 301):
            p = _preview(i)
            sent.append(p)
            sink(p)
            sink(Losses("adapt", i, {"total": 1.0 / i}))
            sink(Progress("adapt", i, 300))
            time.sleep(0.002)
        return "done"

    with qtbot.waitSignal(runner.finished, timeout=20000) as blocker:
        assert runner.start("fake", job)
        assert not runner.start("second", job)  # one job at a time
    assert blocker.args == ["fake", "done"]
    previews = [e for e in got if isinstance(e, Preview)]
    assert 1 < len(previews) < 30  # ~0.6 s of job at one preview per 200 ms, plus the last
    assert previews[-1].iteration == 300  # the held-back last preview is flushed at the end
    assert all(p is not s for p in previews for s in sent[-1:])  # arrays crossed as copies
    assert sum(len(b) for b in batches) == 300 and len(batches) < 100  # every loss, in batches
    assert [e for e in got if isinstance(e, Progress)][-1].iteration == 300
    assert all(t is threading.main_thread() for t in threads)  # delivered on the GUI thread
    runner.shutdown()


def test_job_error_leaves_the_app_usable(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)

    def broken(sink, control):
        raise RuntimeError("the disk is on fire")

    with qtbot.waitSignal(window.runner.finished, timeout=10000):
        window.runner.start("broken", broken)
    assert "the disk is on fire" in window.last_error
    assert not window.runner.busy
    with qtbot.waitSignal(window.runner.failed, timeout=10000):  # a user error: one sentence
        window.runner.start("user", lambda s, c: (_ for _ in ()).throw(UserError("no target set")))
    qtbot.waitUntil(lambda: not window.runner.busy)
    assert window.last_error.endswith("no target set")
    # Still usable: the next job runs and its result arrives.
    with qtbot.waitSignal(window.runner.finished, timeout=10000) as blocker:
        assert window.runner.start("ok", lambda s, c: 42)
    assert blocker.args == ["ok", 42]
    assert not window.open_project(tmp_path / "missing")  # a bad folder: a message, no crash
    assert "does not exist" in window.last_error
    close_window(window)


def test_pause_resume_stop_saves_a_checkpoint(qtbot, tmp_path, tmp_path_factory):
    data = synth(tmp_path_factory.getbasetemp())
    from murid_gui import tasks

    folder = tmp_path / "p"
    tasks.create_project(folder, f"synthcity:{data}", f"synthcity:{data}", "smoke")
    cfg = Project.open(folder).config
    cfg.adapt.iterations = 400  # long enough to be stopped in the middle
    Project.open(folder).save_config(cfg)
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    window.show_view("train")
    qtbot.waitUntil(window.train_view.start_button.isEnabled, timeout=30000)  # the project was read
    qtbot.mouseClick(window.train_view.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.train_view.stage_label.text().startswith("adapt "), timeout=30000)
    assert window.train_view.pause_button.isEnabled()
    qtbot.mouseClick(window.train_view.pause_button, Qt.LeftButton)
    assert window.runner.paused and window.train_view.pause_button.text().endswith("Resume")
    qtbot.mouseClick(window.train_view.pause_button, Qt.LeftButton)
    assert not window.runner.paused
    with qtbot.waitSignal(window.runner.finished, timeout=30000) as blocker:
        qtbot.mouseClick(window.train_view.stop_button, Qt.LeftButton)
    assert blocker.args == ["train", False]  # stopped, not failed
    project = Project.open(folder)
    assert project.latest_checkpoint() is not None
    assert "checkpoint was saved" in window.status_label.text()
    assert window.train_view.start_button.isEnabled() and window.last_error is None
    assert window.train_view.losses.series  # the curves got the live losses
    close_window(window)



def test_held_back_preview_is_sent_once_its_interval_passes():
    from murid_gui.worker import SignalSink

    class Out:
        def __init__(self):
            self.items = []

        def emit(self, x):
            self.items.append(x)

    class FakeWorker:
        event, losses = Out(), Out()

    now = [0.0]
    sink = SignalSink(FakeWorker(), clock=lambda: now[0])
    sink(_preview(1))  # passes at once
    sink(_preview(2))  # held: within 200 ms of the first
    shown = lambda: [e.iteration for e in FakeWorker.event.items if isinstance(e, Preview)]  # noqa: E731
    assert shown() == [1]
    now[0] = 0.25
    sink(Progress("adapt", 2, 10))  # no new preview, but the held one is now due
    assert shown() == [1, 2]
    sink(StageStarted("x"))  # other events: nothing new to flush
    assert shown() == [1, 2]


def test_a_failing_training_run_reports_and_recovers(qtbot, tmp_path, tmp_path_factory):
    from murid_gui import tasks

    data = synth(tmp_path_factory.getbasetemp())
    folder = tmp_path / "bad"
    tasks.create_project(folder, f"synthcity:{data}", f"synthcity:{tmp_path / 'moved'}", "smoke")
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    qtbot.waitUntil(window.train_view.start_button.isEnabled, timeout=30000)
    with qtbot.waitSignal(window.runner.finished, timeout=30000) as blocker:
        qtbot.mouseClick(window.train_view.start_button, Qt.LeftButton)
    assert blocker.args == ["train", None]
    assert "moved" in window.last_error and "Traceback" not in window.last_error
    assert window.status_label.text() == window.last_error
    assert window.train_view.start_button.isEnabled() and not window.train_view.stop_button.isEnabled()
    close_window(window)


def test_lowering_the_worker_threads_priority_leaves_the_gui_thread_alone():
    import os
    import sys
    import threading

    import pytest

    from murid_gui.worker import lower_thread_priority

    if not sys.platform.startswith("linux"):
        pytest.skip("the nice value is per thread on Linux only")
    main = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, main)
    seen = {}

    def worker():
        seen["done"] = lower_thread_priority(3)
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["done"] and seen["nice"] == min(19, before + 3)
    assert os.getpriority(os.PRIO_PROCESS, main) == before  # per thread, not the whole process


def test_emitting_signals_cannot_free_true():
    import sys

    from PySide6.QtCore import QObject, Signal

    import murid_gui  # noqa: F401 - importing it guards the singletons

    class Emitter(QObject):
        ping = Signal(int)

    emitter, before = Emitter(), sys.getrefcount(True)
    for _ in range(20_000):  # more than True's own count in a fresh interpreter
        emitter.ping.emit(1)
    lost = before - sys.getrefcount(True)
    # Immortal (PEP 683 in 3.12; our guard before): a count no session can wear down to zero.
    assert sys.getrefcount(True) > 1 << 30, f"{lost} references lost, {sys.getrefcount(True)} left"
