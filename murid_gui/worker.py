"""The one worker thread that runs every engine job, and the sink that turns events into signals.

DESIGN §4: a ``QObject`` worker moved to a ``QThread`` runs the job; engine events become
queued Qt signals, rate-limited so previews never flood the GUI thread, and arrays cross the
thread boundary as copies. The GUI thread only asks (``JobRunner.start``), and obeys the
signals; it never trains.

Rate limits (per job): a preview at most every ``PREVIEW_INTERVAL_S``; progress and losses are
coalesced (the latest progress, a batch of losses) and sent at most every
``PROGRESS_INTERVAL_S``. Whatever is held back is flushed before any other event and when the
job ends, so the last preview, the last progress and every loss value arrive.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from murid_engine.errors import UserError
from murid_engine.jobs import Control, JobError, Losses, Preview, Progress, RateLimiter

from .gui_gc import collect_and_freeze, collect_on_gui_thread

PREVIEW_INTERVAL_S = 0.2
PROGRESS_INTERVAL_S = 0.1
WORKER_NICE = 0  # added to the worker thread's nice value (see lower_thread_priority)

Job = Callable[[Callable[[Any], None], Control], Any]  # job(sink, control) -> result


class SignalSink:
    """The EventSink handed to a job: called on the worker thread, emits the worker's signals."""

    def __init__(self, worker: "JobWorker", clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self._previews = RateLimiter(PREVIEW_INTERVAL_S, clock)
        self._progress_gate = RateLimiter(PROGRESS_INTERVAL_S, clock)
        self._pending_preview: Preview | None = None
        self._pending_progress: Progress | None = None
        self._pending_losses: list[Losses] = []
        self.error: JobError | None = None
        self.counts = {"events": 0, "emitted": 0}

    def __call__(self, event: Any) -> None:
        self.counts["events"] += 1
        if isinstance(event, Preview):
            self._pending_preview = event  # the emitter never mutates it; copied when sent
            if self._previews.ready("preview"):
                self._send_preview()
            return
        if isinstance(event, Progress):
            self._pending_progress = event
        elif isinstance(event, Losses):
            self._pending_losses.append(event)
        else:
            self.flush()
            if isinstance(event, JobError):
                self.error = event
                return  # the worker reports it once, with the job's end
            self._emit_event(event)
            return
        if self._progress_gate.ready("progress"):
            self._send_coalesced()
        if self._pending_preview is not None and self._previews.ready("preview"):
            self._send_preview()  # a held-back preview goes out once its interval has passed

    def flush(self) -> None:
        """Send whatever is held back (at a stage boundary and at the end of the job)."""
        self._send_coalesced()
        if self._pending_preview is not None:
            self._send_preview()

    def _send_coalesced(self) -> None:
        if self._pending_losses:
            batch, self._pending_losses = self._pending_losses, []
            self.counts["emitted"] += 1
            self.worker.losses.emit(batch)
        if self._pending_progress is not None:
            self._emit_event(self._pending_progress)
            self._pending_progress = None

    def _send_preview(self) -> None:
        preview, self._pending_preview = self._pending_preview, None
        self._emit_event(preview.copied())  # the copy is the GUI's alone

    def _emit_event(self, event: Any) -> None:
        self.counts["emitted"] += 1
        self.worker.event.emit(event)


def lower_thread_priority(step: int) -> bool:
    """Raise the calling thread's nice value by `step`; True when done.

    On Linux the nice value is per thread (NPTL; setpriority(2) on the thread's id), so the GUI
    thread keeps its priority, and threads the worker starts later (torch's intra-op pool)
    inherit the lower one. Elsewhere nice is per process: nothing is changed.
    """
    if step <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        return False
    return True


class JobWorker(QObject):
    """Lives on the worker thread; runs one job at a time when ``request`` arrives."""

    request = Signal(str, object, object)  # name, job, control (GUI -> worker, queued)
    preload_request = Signal()
    preloaded = Signal(bool)
    started = Signal(str)
    event = Signal(object)  # StageStarted/Finished, Progress, Preview, RoundReady, ...
    losses = Signal(list)  # a batch of Losses events
    failed = Signal(str, str, str)  # job name, one sentence for the user, detail (traceback)
    finished = Signal(str, object)  # job name, the job's result (None after a failure)

    def __init__(self) -> None:
        super().__init__()
        self.request.connect(self._run)
        self.preload_request.connect(self._preload)

    @Slot()
    def _preload(self) -> None:
        """Warm the engine up before the first job (queued first, so jobs wait for it)."""
        try:
            from .tasks import preload_engine

            lower_thread_priority(WORKER_NICE)  # before torch starts its threads from here
            preload_engine()
        except Exception:  # noqa: BLE001 - only a warm-up: the job itself will report a problem
            self.preloaded.emit(False)
            return
        self.preloaded.emit(True)

    @Slot(str, object, object)
    def _run(self, name: str, job: Job, control: Control) -> None:
        self.started.emit(name)
        sink = SignalSink(self)
        result = None
        try:
            result = job(sink, control)
        except UserError as exc:  # the user's mistake: one sentence, no traceback
            sink.flush()
            self.failed.emit(name, str(exc), "")
        except Exception as exc:  # noqa: BLE001 - reported to the user, the app stays usable
            sink.flush()
            error = sink.error or JobError.from_exception(exc)
            detail = error.detail or "".join(traceback.format_exception(exc))
            self.failed.emit(name, f"{type(exc).__name__}: {error.message}", detail)
        else:
            sink.flush()
        self.finished.emit(name, result)


class JobRunner(QObject):
    """GUI-side handle of the worker thread: start one job at a time, pause, resume, stop it."""

    started = Signal(str)
    event = Signal(object)
    losses = Signal(list)
    failed = Signal(str, str, str)
    finished = Signal(str, object)
    busy_changed = Signal(bool)
    paused_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, preload: bool = True) -> None:
        super().__init__(parent)
        collect_on_gui_thread()  # before the worker thread exists (gui_gc says why)
        self.thread = QThread()
        self.thread.setObjectName("murid-worker")
        self.worker = JobWorker()
        self.worker.moveToThread(self.thread)
        # Worker signals reach the GUI thread queued (the worker lives on another thread).
        self.worker.started.connect(self.started)
        self.worker.event.connect(self.event)
        self.worker.losses.connect(self.losses)
        self.worker.failed.connect(self.failed)
        self.worker.finished.connect(self._on_finished)
        self.preloaded = False
        self.worker.preloaded.connect(self._on_preloaded)
        self.thread.start()
        if preload:
            self.worker.preload_request.emit()
        self.control: Control | None = None
        self.current: str | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None

    def start(self, name: str, job: Job) -> bool:
        """Queue `job` on the worker thread; False (nothing started) while another job runs."""
        if self.busy:
            return False
        self.control = Control()
        self.current = name
        self.busy_changed.emit(True)
        self.worker.request.emit(name, job, self.control)
        return True

    def pause(self) -> None:
        if self.control is not None and not self.control.stopped:
            self.control.pause()
            self.paused_changed.emit(True)

    def resume(self) -> None:
        if self.control is not None:
            self.control.resume()
            self.paused_changed.emit(False)

    def stop(self) -> None:
        """Ask the job to stop; it saves a checkpoint first and then ends (``finished``)."""
        if self.control is not None:
            self.control.stop()
            self.paused_changed.emit(False)

    @property
    def paused(self) -> bool:
        return self.control is not None and self.control.paused

    def _on_preloaded(self, ok: bool) -> None:
        collect_and_freeze()  # here, on the GUI thread (gui_gc says why)
        self.preloaded = True

    def _on_finished(self, name: str, result: object) -> None:
        self.current = None
        self.busy_changed.emit(False)
        self.finished.emit(name, result)

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Stop a running job (it checkpoints) and end the thread; called when the app closes."""
        self.stop()
        self.thread.quit()
        self.thread.wait(timeout_ms)
