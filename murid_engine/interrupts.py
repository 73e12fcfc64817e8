"""Ctrl+C, SIGTERM and SIGHUP ask a running job to stop: it saves a checkpoint, then returns.

SIGTERM is what Slurm, Docker, systemd and `kill` send before they kill; SIGHUP comes when the
terminal goes away. All three set the job's Control to stop, so the training loop saves
checkpoints/latest.pt at its next iteration (on every rank: the loop asks `dist.any`), and the
command exits with the conventional code 128 + the signal's number (130, 143, 129). A second
signal while the job is stopping aborts it (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from murid_engine.jobs import Control

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

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

    def handler(signum, frame):
        _received.append(signum)
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
