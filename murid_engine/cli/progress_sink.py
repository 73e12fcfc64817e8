"""Renders job events in a terminal: one tqdm bar per stage on stderr, summary lines on stdout.

Bars only appear when stderr is a terminal; otherwise (CI logs, a pipe, tests) the sink prints
plain lines instead: stage start/end and, at most every ``log_interval_s``, the progress.
"""

from __future__ import annotations

import numbers
import sys
import time
from typing import Any, Self, TextIO

from tqdm import tqdm

from murid_engine.jobs import (
    Clock,
    EvaluationResult,
    Event,
    JobError,
    Losses,
    Message,
    Progress,
    RateLimiter,
    RoundReady,
    StageFinished,
    StageStarted,
)


def _number(v: Any) -> str:
    return str(v) if isinstance(v, numbers.Integral) else f"{v:.4g}"


def _scalars(values: dict[str, Any], sep: str = " ") -> str:
    """``key value`` pairs of the scalar entries; lists and matrices belong in the JSON files."""
    return ", ".join(f"{k}{sep}{_number(v)}" for k, v in values.items()
                     if isinstance(v, numbers.Real))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class TerminalSink:
    """An ``EventSink`` for the command line; call ``close()`` (or use ``with``) at the end.

    ``enabled`` forces the bars on or off (None: only when stderr is a terminal); ``verbose``
    adds a JobError's traceback detail, which a user's mistake should never need.
    """

    def __init__(self, enabled: bool | None = None, verbose: bool = False,
                 log_interval_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        self._enabled = enabled
        self._verbose = verbose
        self._log = RateLimiter(log_interval_s, clock)
        self._clock = clock
        self._bar: tqdm | None = None
        self._stage: str | None = None
        self._started = 0.0
        self._last: Progress | None = None
        self._losses = ""

    # -- event dispatch

    def __call__(self, event: Event) -> None:
        match event:
            case StageStarted(stage=stage):
                self._begin(stage)
            case Progress():
                self._progress(event)
            case Losses(stage=stage, values=values):
                self._on_losses(stage, values)
            case StageFinished(stage=stage):
                self._finish(stage)
            case RoundReady(round=r, path=path, portion=portion, stats=stats):
                extra = _scalars(stats, sep="=")
                self._write(f"round {r}: pseudo-labels ready in {path} (portion {portion:.0%}"
                            + (f", {extra})" if extra else ")"))
            case EvaluationResult(model=model, scores=scores):
                self._write(f"{model}: {_scalars(scores) or 'no scalar scores'}")
            case Message(text=text):
                self._write(text)
            case JobError(detail=detail):
                # The job re-raises its error and the command reports it once (one sentence
                # for a user's mistake); here only the bar is closed and, when asked, the detail.
                self.close()
                if self._verbose and detail:
                    self._write(detail.rstrip("\n"), sys.stderr)
            case _:
                pass  # previews and unknown events have no terminal form

    def close(self) -> None:
        """Finish the current bar (left on screen) so later output starts on a clean line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    @property
    def bars(self) -> bool:
        """Whether bars are drawn (decided on each stage so a redirected stderr is honoured)."""
        return _is_tty(sys.stderr) if self._enabled is None else self._enabled

    def _write(self, line: str, file: TextIO | None = None) -> None:
        # tqdm.write clears and redraws the bar around the line; None means sys.stdout now.
        tqdm.write(line, file=file if file is not None else sys.stdout)

    def _begin(self, stage: str) -> None:
        self.close()
        self._stage, self._started, self._last, self._losses = stage, self._clock(), None, ""
        self._log.reset()
        if not self.bars:
            self._write(f"{stage}: started")

    def _desc(self, p: Progress) -> str:
        if p.round is None:
            return p.stage
        return f"{p.stage} round {p.round}" + (f"/{p.rounds}" if p.rounds is not None else "")

    def _progress(self, p: Progress) -> None:
        if p.stage != self._stage:
            self._begin(p.stage)  # a job that skipped StageStarted still gets its own bar
        self._last = p
        total = p.total if p.total and p.total > 0 else None
        if not self.bars:
            if p.iteration < p.total and self._log.ready():
                self._write(self._line(p))
            return
        if self._bar is None:
            # initial=iteration: a resumed stage starts part-way without a false burst of speed
            self._bar = tqdm(total=total, initial=p.iteration, desc=self._desc(p), unit="it",
                             dynamic_ncols=True, leave=True, file=sys.stderr)
            if self._losses:
                self._bar.set_postfix_str(self._losses, refresh=False)
        bar = self._bar
        bar.set_description(self._desc(p), refresh=False)
        if bar.total != total:
            bar.total = total
        if p.iteration < bar.n:  # the stage restarted (e.g. a new round reuses the stage name)
            bar.reset(total=total)
        bar.update(p.iteration - bar.n)

    def _on_losses(self, stage: str, values: dict[str, float]) -> None:
        if stage != self._stage:
            return  # stale losses of a finished stage would mislabel the new bar
        self._losses = _scalars(values, sep="=")
        if self._bar is not None:
            self._bar.set_postfix_str(self._losses, refresh=False)

    def _line(self, p: Progress) -> str:
        share = f" ({p.iteration / p.total:.0%})" if p.total > 0 else ""
        eta = f", eta {tqdm.format_interval(p.eta_s)}" if p.eta_s is not None else ""
        losses = f", {self._losses}" if self._losses else ""
        return f"{self._desc(p)}: {p.iteration}/{p.total}{share}{eta}{losses}"

    def _finish(self, stage: str) -> None:
        if stage != self._stage:
            return
        if self._bar is not None:
            if self._bar.total is not None and self._bar.n < self._bar.total:
                self._bar.update(self._bar.total - self._bar.n)  # end at 100 % despite throttling
            self.close()
        else:
            done = f"{self._last.iteration}/{self._last.total} iterations, " if self._last else ""
            took = tqdm.format_interval(self._clock() - self._started)
            losses = f", {self._losses}" if self._losses else ""
            self._write(f"{stage}: finished ({done}{took}{losses})")
        self._stage, self._last = None, None
