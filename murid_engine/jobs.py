"""The job interface: events a long job emits, the control it obeys, and timing helpers.

A loop takes an ``EventSink`` (any callable taking one event) and a ``Control``; between
iterations it calls ``control.checkpoint()`` and, when True, saves a checkpoint and returns.
No Qt here: the GUI wraps a sink into queued signals, the CLI uses ``TerminalSink``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_args, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from murid_engine.curriculum.round_summary import RoundSummary

Clock = Callable[[], float]


@dataclass(frozen=True)
class StageStarted:
    """A stage (warmup, adapt, curriculum, distill, evaluate, ...) begins."""
    stage: str


@dataclass(frozen=True)
class StageFinished:
    """A stage ended normally (a stopped stage emits no StageFinished)."""
    stage: str


@dataclass(frozen=True)
class Progress:
    """Where a stage stands; ``round``/``rounds`` are set inside curriculum rounds."""
    stage: str
    iteration: int
    total: int
    round: int | None = None
    rounds: int | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class Losses:
    """Scalar losses at one iteration, already converted to Python floats."""
    stage: str
    iteration: int
    values: dict[str, float]

    def __post_init__(self) -> None:
        # float() detaches torch scalars, so no tensor (or its graph) crosses a thread boundary,
        # and the copy keeps a later mutation of the caller's dict out of this event.
        object.__setattr__(self, "values", {str(k): float(v) for k, v in self.values.items()})


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays element-wise is ambiguous
class Preview:
    """Live predictions on a fixed strip of target images (shapes checked on creation).

    The emitter must not mutate the arrays afterwards; another thread's consumer takes copied().
    """
    stage: str
    iteration: int
    stems: tuple[str, ...]
    images: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "stems", tuple(self.stems))
        im, pr, cf = self.images, self.predictions, self.confidence
        if not (im.dtype == np.uint8 and im.ndim == 4 and im.shape[-1] == 3
                and pr.dtype == np.uint8 and pr.shape == im.shape[:3] == cf.shape
                and cf.dtype in (np.float16, np.float32) and len(self.stems) == len(im)):
            raise ValueError(
                "Preview wants N stems, uint8 N×H×W×3 images, uint8 N×H×W predictions and "
                f"float16/32 N×H×W confidence; got {len(self.stems)} stems, "
                f"{im.dtype}{im.shape}, {pr.dtype}{pr.shape}, {cf.dtype}{cf.shape}")

    def copied(self) -> Preview:
        """The same preview with its own arrays (for handing to another thread)."""
        return Preview(self.stage, self.iteration, self.stems, self.images.copy(),
                       self.predictions.copy(), self.confidence.copy())


@dataclass(frozen=True)
class RoundReady:
    """A curriculum round's pseudo-labels are written at ``path`` and can be reviewed."""
    round: int
    path: str
    portion: float
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, summary: "RoundSummary", path: Path | str) -> "RoundReady":
        """The event of a round just written (its summary from `write_round`)."""
        return cls(summary.round, str(path), summary.portion, {"kept_fraction": summary.kept_fraction})


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of one model (teacher, student, source-only) on the evaluation split."""
    model: str
    scores: dict[str, Any]


@dataclass(frozen=True)
class JobError:
    """The job failed: ``message`` is one sentence for the user, ``detail`` the traceback."""
    message: str
    detail: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(message=str(exc) or type(exc).__name__, detail=detail)


@dataclass(frozen=True)
class Message:
    """A free-form informational line (``resumed from ...``, ``saved checkpoint ...``)."""
    text: str


Event = (StageStarted | StageFinished | Progress | Losses | Preview | RoundReady
         | EvaluationResult | JobError | Message)
EVENT_TYPES: tuple[type, ...] = get_args(Event)


@runtime_checkable
class EventSink(Protocol):
    """Anything that accepts events; called on the job's (worker) thread."""
    def __call__(self, event: Event) -> None: ...


class NullSink:
    """Discards every event."""
    def __call__(self, event: Event) -> None:
        pass


class CollectingSink:
    """Keeps every event in order; safe to emit into from several threads (for tests)."""
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        """A snapshot copy, so the caller can iterate while others keep emitting."""
        with self._lock:
            return list(self._events)

    def of_type(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class MultiSink:
    """Forwards each event to several sinks; one failing sink does not starve the others."""
    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)

    def __call__(self, event: Event) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as exc:  # noqa: BLE001 - re-raised below, never swallowed
                first = first or exc
        if first is not None:
            raise first


class Control:
    """Pause / resume / stop requests from any thread, obeyed by the job between iterations."""
    _POLL_S = 0.2  # bounded waits keep Ctrl+C responsive while paused

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        with self._lock:  # a pause after stop must not re-block a loop that is saving and leaving
            if not self._stop.is_set():
                self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            self._running.set()  # wake a paused loop so it can save and exit

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self, on_pause: Callable[[], None] | None = None,
                   on_resume: Callable[[], None] | None = None) -> bool:
        """Block while paused; True when the loop must stop (save a checkpoint, then return).

        ``on_pause`` runs before blocking, ``on_resume`` after a pause that ends without a stop.
        """
        if self._stop.is_set():
            return True
        if not self._running.is_set():
            if on_pause is not None:
                on_pause()
            while not self._running.wait(self._POLL_S):
                pass
            if on_resume is not None and not self._stop.is_set():
                on_resume()
        return self._stop.is_set()


class StopRequested(Exception):
    """Raised from inside a loop over images when the job's control says stop; the job catches
    it, leaves what it had written before the loop as it was, and returns."""


class ImageProgress:
    """The callback a loop over images calls after each one: ``on_image(done, total)``.

    It sends a Progress event (with an ETA) and checks the control there, so a long pass over a
    dataset shows real progress and a cancel is obeyed within one image (StopRequested).
    """
    def __init__(self, sink: Callable[[Any], None], stage: str, control: Control | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.sink, self.stage, self.control = sink, stage, control
        self._eta = EtaEstimator(clock=clock)
        self._total: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if total != self._total:
            self._total = total
            self._eta.start(total, 0)
        self._eta.update(done)
        self.sink(self._eta.progress(self.stage))
        self.check()

    def check(self) -> None:
        """Raise StopRequested when a stop was asked (blocks while paused)."""
        if self.control is not None and self.control.checkpoint():
            raise StopRequested


class EtaEstimator:
    """Seconds per iteration smoothed over the last ``window`` updates, and the ETAs it implies."""
    def __init__(self, window: int = 20, clock: Clock = time.monotonic) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window = window
        self._clock = clock
        self.start(0)

    def start(self, total: int, done: int = 0) -> None:
        """Begin a stage of ``total`` iterations, ``done`` of them already (a resumed run)."""
        now = self._clock()
        self.total, self.iteration, self._t0 = total, done, now
        self._samples: deque[tuple[int, float]] = deque([(done, now)], maxlen=self._window + 1)
        self._spi: float | None = None

    def update(self, iteration: int) -> None:
        """Record that ``iteration`` iterations of the stage are done."""
        if iteration <= self._samples[-1][0]:
            return  # a repeated report adds no timing information
        self._samples.append((iteration, self._clock()))
        self.iteration = iteration
        (i0, t0), (i1, t1) = self._samples[0], self._samples[-1]
        self._spi = (t1 - t0) / (i1 - i0)

    def mark_resumed(self) -> None:
        """Forget the time spent paused: restart the window, keep the last rate meanwhile."""
        self._samples = deque([(self.iteration, self._clock())], maxlen=self._window + 1)

    @property
    def seconds_per_iteration(self) -> float | None:
        return self._spi

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._t0

    def eta_s(self) -> float | None:
        """Seconds left in this stage, None until a rate is known."""
        return None if self._spi is None else self._spi * max(self.total - self.iteration, 0)

    def job_eta_s(self, later: Iterable[int] | int = ()) -> float | None:
        """This stage's ETA plus ``later`` iterations (int or per-stage counts) at today's rate."""
        eta, count = self.eta_s(), later if isinstance(later, int) else sum(later)
        return None if eta is None else eta + self._spi * max(count, 0)  # type: ignore[operator]

    def progress(self, stage: str, round: int | None = None, rounds: int | None = None,
                 later: Iterable[int] | int | None = None) -> Progress:
        """A Progress event for the current state; with ``later`` the ETA is the whole job's."""
        eta = self.eta_s() if later is None else self.job_eta_s(later)
        return Progress(stage, self.iteration, self.total, round, rounds, self.elapsed_s, eta)


class RateLimiter:
    """Lets an action through at most once per ``min_interval_s`` (per key), thread-safe."""
    def __init__(self, min_interval_s: float, clock: Clock = time.monotonic) -> None:
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}

    def ready(self, key: Hashable = None) -> bool:
        """True (and the interval restarts) when the action may happen now."""
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self.min_interval_s:
                return False
            self._last[key] = now
            return True

    def reset(self) -> None:
        """Let the next ``ready`` of every key pass at once."""
        with self._lock:
            self._last.clear()
