"""Reads off the GUI thread: a project's files arrive as a signal, the views show a placeholder meanwhile.

The worker thread (worker.py) runs one engine job at a time, and training holds it for hours, so
the reads a view needs when a project opens (metrics.jsonl, a round's first image) go to this
small reader thread instead. Each read has a key; a newer read of the same key (another project
opened, another image chosen) makes the older one's result stale, and a stale result is dropped.

While a read runs, Python's thread switch interval is lowered (READ_SWITCH_INTERVAL_S): parsing
50,000 JSON lines holds the GIL, and every time the GUI thread lets the GIL go (a Qt call, a stat)
it would otherwise wait up to the default 5 ms to get it back, so a few hundred such calls in one
GUI slice stalled the event loop for tens of ms.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from .gui_gc import collect_on_gui_thread

READ_SWITCH_INTERVAL_S = 0.0005  # the default is 0.005
PAUSE_S = 0.0005  # a long read's pause between chunks, the GIL let go
CHUNK = 1000  # items between pauses (~2-4 ms of Python each)
T = TypeVar("T")
_RELEASE = object()  # the key of a queue item that is only dropped (Reader.release)


_switch_lock = threading.Lock()
_switch_users = [0, 0.005]  # reads running now, the interval before the first of them


@contextlib.contextmanager
def gil_handed_back_often(interval_s: float = READ_SWITCH_INTERVAL_S):
    """Lower the (process-wide) switch interval for the block; the last of the readers running
    (an app has one, tests make more) puts the previous value back."""
    with _switch_lock:
        if _switch_users[0] == 0:
            _switch_users[1] = sys.getswitchinterval()
        _switch_users[0] += 1
        sys.setswitchinterval(min(_switch_users[1], interval_s))
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users[0] -= 1
            if _switch_users[0] == 0:
                sys.setswitchinterval(_switch_users[1])


def yield_gil() -> None:
    """A short sleep in a long read: the GUI thread takes the GIL uncontended meanwhile."""
    time.sleep(PAUSE_S)


def paced(items: Iterable[T], every: int = CHUNK) -> Iterator[T]:
    """`items`, with a pause every `every` of them (a long pure-Python loop on the reader thread)."""
    for i, item in enumerate(items, start=1):
        if i % every == 0:
            yield_gil()
        yield item


class Reader(QObject):
    _done = Signal(str, int, object, str)  # key, token, result, error ('' when none)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        collect_on_gui_thread()  # before the reader thread exists (gui_gc says why)
        self._tokens: dict[str, int] = {}
        self._callbacks: dict[tuple[str, int], tuple[Callable, Callable | None]] = {}
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._done.connect(self._deliver)  # queued: emitted on the reader thread
        self._thread = threading.Thread(target=self._loop, name="murid-reader", daemon=True)
        self._thread.start()

    def read(self, key: str, fn: Callable[[], Any], done: Callable[[Any], None],
             failed: Callable[[str], None] | None = None) -> None:
        """Run fn() on the reader thread; done(result) (or failed(message)) follows on the GUI thread."""
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        self._callbacks[(key, token)] = (done, failed)
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((key, token, fn))

    def release(self, holder: list) -> None:
        """Empty `holder` on the reader thread, so that the last references, held by it alone, are
        freed there: freeing a 50,000-row loss history (a million Python floats) took ~20 ms of
        GUI time."""
        self._queue.put((_RELEASE, 0, holder))

    def cancel(self, key: str) -> None:
        """Drop the result of the read of `key` in flight (the view moved on)."""
        self._tokens[key] = self._tokens.get(key, 0) + 1

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued read has run (screenshots, tests); their results still queue."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            key, token, fn = self._queue.get()
            if key is None:
                return
            if key is _RELEASE:
                fn.clear()  # the last references: freed here, not on the GUI thread
                continue
            result, error = None, ""
            if self._tokens.get(key) == token:  # not already stale: worth reading
                try:
                    with gil_handed_back_often():
                        result = fn()
                except Exception as exc:  # noqa: BLE001 - shown to the user, the reader goes on
                    error = f"{exc}" or type(exc).__name__
                    if not isinstance(exc, (OSError, ValueError)):
                        error += "\n" + traceback.format_exc()
            self._done.emit(key, token, result, error)
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def _deliver(self, key: str, token: int, result: Any, error: str) -> None:
        done, failed = self._callbacks.pop((key, token), (None, None))
        if done is None or self._tokens.get(key) != token:
            return  # stale: a newer read of the same key is on its way
        if error:
            if failed is not None:
                failed(error.splitlines()[0])
        else:
            done(result)

    def shutdown(self) -> None:
        self._queue.put((None, 0, None))
        self._thread.join(timeout=5)
