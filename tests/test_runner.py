"""The one training loop: the order it calls a stage in, what it records, stop and resume."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from murid_engine.checkpoint import load_checkpoint
from murid_engine.config import apply_overrides, load_preset
from murid_engine.distributed import DistContext
from murid_engine.jobs import CollectingSink, Control, Losses, StageFinished, StageStarted
from murid_engine.pipeline import run_pipeline
from murid_engine.project import Project
from murid_engine.records import EvaluationRecord, LossRecord, RoundRecord, read_records
from murid_engine.training.loader import Batch
from murid_engine.training.runner import LOG_EVERY, STAGE_TYPES, JobContext, RunClock, SavedState, Stage, StageRunner
from murid_engine.training.trainer import TeacherTrainer
from smoke_runs import one_thread, synth_data


class ToyStage(Stage):
    """A one-parameter stage that logs what the runner asks of it."""
    name = "warmup"  # a real stage name: the config gives it a learning rate

    def __init__(self, job, calls, length=25):
        super().__init__(job)
        self.calls, self.length = calls, length
        self.weight = nn.Parameter(torch.tensor(3.0))

    @property
    def total(self):
        return self.length

    def begin(self, first, optimizer_state):
        self.calls.append(("begin", first))
        self.optimizer = torch.optim.SGD([self.weight], lr=0.1)

    def before_iteration(self, it):
        self.calls.append(("before", it))

    def batch(self, it):
        return Batch(torch.zeros(1), torch.zeros(1))

    def step(self, batch, it):
        self.calls.append(("step", it))
        return {"square": self.weight ** 2}

    def after_step(self, it):
        self.calls.append(("after_step", it))

    def after_iteration(self, done):
        self.calls.append(("after", done))

    def saved_state(self):
        return SavedState("toy", {})

    def finish(self):
        self.calls.append(("finish", self.total))


def _job(tmp_path, control=None, sink=None, **settings):
    cfg = apply_overrides(load_preset("smoke"), [f"{k}={v}" for k, v in settings.items()])
    project = Project.create(tmp_path / "p", cfg.validate())
    return JobContext(project, project.config, sink or CollectingSink(), control or Control(), DistContext(),
                      np.random.default_rng(0))


def test_the_runner_calls_a_stage_in_order_and_writes_loss_records(tmp_path):
    calls: list = []
    job = _job(tmp_path, checkpoint_every=10, preview_every=0)
    stage = ToyStage(job, calls)
    assert StageRunner(job).run(stage) is True
    assert calls[:5] == [("begin", 0), ("before", 0), ("step", 0), ("after_step", 0), ("after", 1)]
    assert calls[-2:] == [("after_step", 24), ("finish", 25)]
    assert ("after", 25) not in calls  # the last iteration ends in finish, not after_iteration
    assert stage.weight.item() < 3.0  # the runner stepped the optimiser on the stage's loss
    records = read_records(job.project.read_metrics())
    assert [r.iteration for r in records] == [10, 20, 25]
    assert all(isinstance(r, LossRecord) and set(r.values) == {"square", "total"} for r in records)
    events = job.sink.events
    assert isinstance(events[0], StageStarted) and isinstance(events[-1], StageFinished)
    assert [e.iteration for e in events if isinstance(e, Losses)] == list(range(1, 26))
    # checkpoints at 10 and 20 (the cadence), then at the end: the file holds the last
    assert load_checkpoint(job.project.checkpoint_path("toy")).iteration == 25


def test_a_stop_saves_the_resume_point_at_the_iteration_it_stopped(tmp_path):
    calls: list = []
    control = Control()

    def stop_at_7(event):
        if isinstance(event, Losses) and event.iteration == 7:
            control.stop()

    job = _job(tmp_path, control, stop_at_7, checkpoint_every=0, preview_every=0)
    assert StageRunner(job).run(ToyStage(job, calls)) is False
    saved = load_checkpoint(job.project.checkpoint_path("toy"))
    assert (saved.stage, saved.iteration) == ("warmup", 7)
    assert ("finish", 25) not in calls and ("step", 7) not in calls
    assert "elapsed_s" in saved.extra


def test_the_run_clock_continues_from_a_saved_time():
    now = [100.0]
    clock = RunClock(clock=lambda: now[0])
    now[0] = 104.0
    assert clock.elapsed() == 4.0
    clock.resume_from(50.0)
    now[0] = 106.5
    assert clock.elapsed() == 52.5


def test_every_stage_is_looked_up_by_name():
    import murid_engine.baselines.trainer  # noqa: F401 - registers the baseline stages
    import murid_engine.distill.trainer  # noqa: F401
    assert {"warmup", "adapt", "curriculum", "distill", "mixstyle", "dacs"} <= set(STAGE_TYPES)
    assert all(cls.name == name for name, cls in STAGE_TYPES.items())


def test_time_is_continuous_across_a_stop_and_resume(tmp_path):
    data = synth_data(tmp_path / "synth")
    cfg = apply_overrides(load_preset("smoke"), [
        f"data.source=synthcity:{data}", f"data.target=synthcity:{data}", "warmup.iterations=20",
        "adapt.iterations=20", "checkpoint_every=10", "preview_every=0",
        "stages=warmup,adapt"]).validate()
    project = Project.create(tmp_path / "p", cfg)
    control = Control()

    def stop_in_adapt(event):
        if isinstance(event, Losses) and event.stage == "adapt" and event.iteration == 15:
            control.stop()

    with one_thread():
        assert TeacherTrainer(project, stop_in_adapt, control).run() is False
        before = project.read_metrics()
        saved = load_checkpoint(project.checkpoint_path())
        assert (saved.stage, saved.iteration) == ("adapt", 15)
        assert TeacherTrainer(Project.open(project.root)).run(resume=True) is True
    rows = project.read_metrics()
    times = [r["time_s"] for r in rows]
    assert times == sorted(times), times  # the clock did not restart at 0 on resume
    resumed = [r for r in rows if r not in before]
    assert resumed and min(r["time_s"] for r in resumed) >= saved.extra["elapsed_s"]
    kinds = [type(r) for r in read_records(rows)]
    assert kinds.count(EvaluationRecord) == 2  # source-only after warm-up, the teacher after adapt
    # one loss record per LOG_EVERY iterations of each stage, none duplicated by the resume
    keys = [(r["stage"], r["iteration"]) for r in rows if r["kind"] == "losses"]
    assert keys == [(s, i) for s in ("warmup", "adapt") for i in range(LOG_EVERY, 21, LOG_EVERY)]


def test_records_read_back_what_the_runner_wrote(tmp_path):
    data = synth_data(tmp_path / "synth")
    cfg = apply_overrides(load_preset("smoke"), [f"data.source=synthcity:{data}",
                                                 f"data.target=synthcity:{data}"]).validate()
    project = Project.create(tmp_path / "p", cfg)
    with one_thread():
        assert run_pipeline(project)
    rows = project.read_metrics()
    typed = read_records(rows)
    assert len(typed) == len(rows)
    assert [r.to_json() for r in typed] == rows  # one writer, one reader: nothing lost either way
    rounds = [r for r in typed if isinstance(r, RoundRecord)]
    assert [r.round for r in rounds] == [1, 2]
    evals = [(r.stage, r.model) for r in typed if isinstance(r, EvaluationRecord)]
    assert evals == [("warmup", "source_only"), ("adapt", "teacher"), ("curriculum", "teacher"),
                     ("curriculum", "teacher"), ("distill", "student")]
    json.dumps([r.to_json() for r in typed])


def test_a_stop_during_a_rounds_pseudo_labels_saves_and_resumes_without_a_half_round(tmp_path):
    from murid_engine.jobs import Progress

    data = synth_data(tmp_path / "synth")
    cfg = apply_overrides(load_preset("smoke"), [
        f"data.source=synthcity:{data}", f"data.target=synthcity:{data}", "preview_every=0",
        "stages=warmup,adapt,curriculum"]).validate()
    project = Project.create(tmp_path / "p", cfg)
    control, labelled = Control(), []

    def stop_in_round_2(event):  # Cancel pressed after round 2's first image
        if isinstance(event, Progress) and event.stage.startswith("pseudo-label round"):
            labelled.append((event.stage, event.iteration, event.total))
            if event.stage.endswith("2"):
                control.stop()

    with one_thread():
        assert TeacherTrainer(project, stop_in_round_2, control).run() is False
        n = labelled[0][2]
        assert labelled == [("pseudo-label round 1", i, n) for i in range(1, n + 1)] + [("pseudo-label round 2", 1, n)]
        assert project.rounds() == [1] and not project.round_dir(2).exists()  # no half-written round
        saved = load_checkpoint(project.checkpoint_path())
        assert (saved.stage, saved.iteration) == ("curriculum", cfg.curriculum.iterations_per_round)
        assert TeacherTrainer(Project.open(project.root)).run(resume=True) is True
    assert project.rounds() == [1, 2]
