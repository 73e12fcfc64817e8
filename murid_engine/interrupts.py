"""Ctrl+C, SIGTERM and SIGHUP ask a running job to stop: it saves a checkpoint, then returns.

SIGTERM is what Slurm, Docker, systemd and `kill` send before they kill; SIGHUP comes when the
terminal goes away. All three set the job's Control to stop, so the training loop saves
checkpoints/latest.pt at its next iteration (on every rank: the loop asks `dist.any`), and the
command exits with the conventional code 128 + the signal's number (130, 143, 129). A second
signal while the job is stopping aborts it (KeyboardInterrupt).

One stop often arrives twice: Slurm, Docker and a terminal's Ctrl+C signal every process of the
job, and torchrun also forwards the signal it got to its ranks, a few milliseconds later. The
same signal again within `REPEAT_WINDOW_S` is that echo, not a second request, and is ignored:
taken as "abort", it would end a rank before the checkpoint it was about to write.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from murid_engine.jobs import Control

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REPEAT_WINDOW_S = 1.0  # the same signal again this soon is one stop delivered twice

_received: list[int] = []  # the signals that stopped a job of this process, in order


def stop_exit_code(default: int = 130) -> int:
    """128 + the number of the signal that stopped the job (`default` when none did)."""
    return 128 + _received[-1] if _received else default


@contextmanager
def stop_on_interrupt(control: Control):
    """While inside, a stop signal stops `control`; the second one raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _received.clear()  # a new job: an earlier job's signal says nothing about this one
    first_at: dict[int, float] = {}

    def handler(signum, frame):
        now = time.monotonic()
        if control.stopped and now - first_at.get(signum, -REPEAT_WINDOW_S) < REPEAT_WINDOW_S:
            return  # the echo of this stop (see the module doc)
        _received.append(signum)
        first_at.setdefault(signum, now)
        if control.stopped:
            raise KeyboardInterrupt
        control.stop()

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
