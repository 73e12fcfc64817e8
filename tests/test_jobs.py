"""The job interface: control, timing helpers, sinks, events and the terminal renderer."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from murid_engine.cli.progress_sink import TerminalSink
from murid_engine.jobs import (
    EVENT_TYPES,
    CollectingSink,
    Control,
    EtaEstimator,
    EvaluationResult,
    EventSink,
    JobError,
    Losses,
    Message,
    MultiSink,
    NullSink,
    Preview,
    Progress,
    RateLimiter,
    RoundReady,
    StageFinished,
    StageStarted,
)

TIMEOUT = 1.0  # every wait is bounded so a broken Control fails the test instead of hanging it


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wait_until(predicate, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def _preview(n: int = 2, h: int = 4, w: int = 5) -> Preview:
    return Preview("adapt", 10, tuple(f"img{i}" for i in range(n)),
                   np.zeros((n, h, w, 3), np.uint8), np.ones((n, h, w), np.uint8),
                   np.full((n, h, w), 0.5, np.float16))


def _every_event() -> list:
    return [StageStarted("adapt"), Progress("adapt", 1, 10, 1, 3, 0.5, 4.5),
            Losses("adapt", 1, {"seg": 1.25, "mr": np.float32(0.5)}), _preview(),
            RoundReady(1, "/p/rounds/1", 0.2, {"kept": 0.19, "hist": [1, 2]}),
            EvaluationResult("teacher", {"mIoU": 41.5, "iou": [0.1, 0.2]}),
            JobError("disk is full", "Traceback ..."), Message("saved checkpoint"),
            StageFinished("adapt")]


def test_checkpoint_blocks_while_paused_then_resumes_and_stops():
    control, count, blocked = Control(), [0], threading.Event()

    def loop() -> None:
        while not control.checkpoint(on_pause=blocked.set):
            count[0] += 1
            time.sleep(0.001)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        assert _wait_until(lambda: count[0] >= 5)
        control.pause()
        assert control.paused and blocked.wait(TIMEOUT)
        frozen = count[0]
        time.sleep(0.05)
        assert count[0] == frozen  # no iteration ran while paused
        control.resume()
        assert not control.paused
        assert _wait_until(lambda: count[0] > frozen + 3)
        control.stop()
        worker.join(TIMEOUT)
        assert not worker.is_alive() and control.stopped
    finally:
        control.stop()


def test_stop_while_paused_unblocks_and_skips_on_resume():
    control, result, resumed = Control(), [], []
    control.pause()
    worker = threading.Thread(
        target=lambda: result.append(control.checkpoint(on_resume=lambda: resumed.append(1))),
        daemon=True)
    worker.start()
    try:
        time.sleep(0.05)
        assert worker.is_alive() and result == []  # blocked in checkpoint
        control.stop()
        worker.join(TIMEOUT)
        assert not worker.is_alive()
        assert result == [True] and resumed == []
        control.pause()  # a pause after stop must not block the loop that is leaving
        assert not control.paused and control.checkpoint() is True
    finally:
        control.stop()


def test_fresh_control_runs_and_on_resume_after_real_pause():
    control, calls = Control(), []
    assert control.checkpoint() is False and not control.paused and not control.stopped
    control.pause()
    threading.Timer(0.02, control.resume).start()
    assert control.checkpoint(on_pause=lambda: calls.append("p"),
                              on_resume=lambda: calls.append("r")) is False
    assert calls == ["p", "r"]


def test_rate_limiter_with_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock)
    assert limiter.ready()
    clock.t = 0.5
    assert not limiter.ready()
    assert limiter.ready("preview")  # keys are limited independently
    clock.t = 1.0
    assert limiter.ready() and not limiter.ready()
    clock.t = 1.2
    assert not limiter.ready("preview")
    limiter.reset()
    assert limiter.ready() and limiter.ready("preview")


def test_eta_estimator_numbers():
    clock = FakeClock()
    eta = EtaEstimator(window=2, clock=clock)
    eta.start(total=10)
    assert eta.eta_s() is None and eta.job_eta_s([5]) is None
    for i in (1, 2):
        clock.t += 2.0
        eta.update(i)
    assert eta.seconds_per_iteration == pytest.approx(2.0)
    assert eta.eta_s() == pytest.approx(16.0)  # 8 left at 2 s
    assert eta.job_eta_s([5, 5]) == pytest.approx(36.0)
    assert eta.job_eta_s(3) == pytest.approx(22.0)
    for i in (3, 4):  # the job speeds up; a 2-update window forgets the slow start
        clock.t += 1.0
        eta.update(i)
    assert eta.seconds_per_iteration == pytest.approx(1.0)
    eta.update(4)  # a repeated report changes nothing
    assert eta.seconds_per_iteration == pytest.approx(1.0)

    clock.t += 100.0  # paused for 100 s
    eta.mark_resumed()
    assert eta.eta_s() == pytest.approx(6.0)  # the last rate stands in meanwhile
    clock.t += 1.0
    eta.update(5)
    assert eta.seconds_per_iteration == pytest.approx(1.0)  # the pause does not count
    p = eta.progress("adapt", round=2, rounds=4)
    assert (p.stage, p.iteration, p.total, p.round, p.rounds) == ("adapt", 5, 10, 2, 4)
    assert p.elapsed_s == pytest.approx(107.0) and p.eta_s == pytest.approx(5.0)
    assert eta.progress("adapt", later=[10]).eta_s == pytest.approx(15.0)

    eta.start(total=100, done=50)  # a resumed stage
    clock.t += 5.0
    eta.update(60)
    assert eta.seconds_per_iteration == pytest.approx(0.5) and eta.eta_s() == pytest.approx(20.0)


def test_collecting_sink_is_thread_safe():
    sink, threads, per_thread = CollectingSink(), 8, 400
    barrier = threading.Barrier(threads)

    def emit(t: int) -> None:
        barrier.wait(TIMEOUT)
        for i in range(per_thread):
            sink(Message(f"{t}:{i}"))

    workers = [threading.Thread(target=emit, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(TIMEOUT)
    texts = [e.text for e in sink.events]
    assert len(texts) == threads * per_thread == len(set(texts))
    for t in range(threads):  # each thread's events keep their order
        mine = [x for x in texts if x.startswith(f"{t}:")]
        assert mine == [f"{t}:{i}" for i in range(per_thread)]
    assert len(sink.of_type(Message)) == len(texts) and sink.of_type(Progress) == []


def test_multi_sink_reaches_every_sink_and_reports_a_failure():
    a, b = CollectingSink(), CollectingSink()

    def broken(event) -> None:
        raise RuntimeError("sink broke")

    MultiSink(a, b, NullSink())(Message("x"))
    with pytest.raises(RuntimeError, match="sink broke"):
        MultiSink(a, broken, b)(Message("y"))
    assert [e.text for e in b.events] == ["x", "y"]
    assert all(isinstance(s, EventSink) for s in (a, NullSink(), MultiSink(), TerminalSink()))


def test_events_are_immutable():
    for event in _every_event():
        field = dataclasses.fields(event)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, field, None)
    assert set(EVENT_TYPES) == {type(e) for e in _every_event()}


def test_event_payloads_are_detached_and_checked():
    values = {"seg": np.float32(1.5)}
    losses = Losses("adapt", 3, values)
    values["seg"] = 99.0
    assert losses.values == {"seg": 1.5} and type(losses.values["seg"]) is float
    preview = _preview()
    copy = preview.copied()
    assert copy.stems == preview.stems and not np.shares_memory(copy.images, preview.images)
    assert np.array_equal(copy.confidence, preview.confidence)
    with pytest.raises(ValueError, match="Preview"):
        Preview("adapt", 1, ("a",), np.zeros((1, 4, 4, 3), np.float32),
                np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="Preview"):
        Preview("adapt", 1, ("a", "b"), np.zeros((1, 4, 4, 3), np.uint8),
                np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.float32))
    try:
        raise OSError("disk is full")
    except OSError as exc:
        error = JobError.from_exception(exc)
    assert error.message == "disk is full" and "Traceback" in error.detail


def test_terminal_sink_prints_round_and_evaluation_lines_and_leaves_errors_to_the_command(capsys):
    sink = TerminalSink(enabled=False)
    sink(RoundReady(2, "/proj/rounds/round_02", 0.25, {"kept_fraction": 0.23, "hist": [1]}))
    sink(EvaluationResult("student", {"mIoU": 38.25, "per_class": [0.1, 0.2]}))
    sink(Message("saved checkpoint"))
    sink(JobError("the target folder has no images", "Traceback (most recent call last) ..."))
    sink.close()
    out, err = capsys.readouterr()
    assert "round 2" in out and "/proj/rounds/round_02" in out and "25%" in out
    assert "kept_fraction=0.23" in out and "hist" not in out
    assert "student: mIoU 38.25" in out and "per_class" not in out
    assert "saved checkpoint" in out
    # The job re-raises its error and the command prints it once: the sink adds nothing.
    assert "the target folder has no images" not in err + out and "Traceback" not in err

    TerminalSink(enabled=False, verbose=True)(JobError("boom", "Traceback: detail"))
    assert "Traceback: detail" in capsys.readouterr().err


def test_terminal_sink_without_bars_logs_progress_lines(capsys):
    clock = FakeClock()
    sink = TerminalSink(enabled=False, log_interval_s=10.0, clock=clock)
    sink(StageStarted("warmup"))
    sink(Losses("warmup", 1, {"seg": 2.0}))
    sink(Progress("warmup", 1, 4, eta_s=3.0))
    clock.t = 1.0
    sink(Progress("warmup", 2, 4))  # within the interval: not printed
    clock.t = 12.0
    sink(Progress("warmup", 3, 4, round=1, rounds=2))
    sink(StageFinished("warmup"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "warmup: started"
    assert lines[1].startswith("warmup: 1/4 (25%), eta") and "seg=2" in lines[1]
    assert lines[2].startswith("warmup round 1/2: 3/4")
    assert lines[3].startswith("warmup: finished (3/4 iterations") and len(lines) == 4


@pytest.mark.parametrize("enabled", [True, False])
def test_terminal_sink_never_raises_on_any_event(capsys, enabled):
    odd = [Progress("distill", 5, 0), Progress("distill", 2, 10, eta_s=None),  # restart
           Losses("other-stage", 1, {}), StageFinished("never-started"),
           RoundReady(1, "p", 0.5), EvaluationResult("x", {}), object(), None]
    with TerminalSink(enabled=enabled) as sink:
        for event in _every_event() + odd + _every_event():
            sink(event)
    sink.close()  # closing twice is harmless
    out, err = capsys.readouterr()
    assert out.count("saved checkpoint") == 2 and "disk is full" not in err
    if enabled:
        assert "adapt round 1/3" in err  # the bar was drawn (to the captured stderr)
