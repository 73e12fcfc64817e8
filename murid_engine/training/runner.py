"""The one training loop: every stage (warm-up, adapt, curriculum, distillation, the reference
runs) runs through `StageRunner.run`.

A stage supplies only what is its own (`Stage`): its length and learning rate, its batches, a step
function `(batch, iteration) -> dict of named losses`, the models to preview and to checkpoint,
and hooks (before an iteration: a curriculum round begins; after the optimiser step: the EMA
teacher follows; after an iteration: a round ends; at the end: final files and evaluation). The
runner owns everything between iterations, in this order, for every stage alike:

    hook before → control (pause blocks; stop saves a checkpoint and returns False) →
    learning rate (poly) → batch → step under the precision's autocast → rank-averaged optimiser
    step → hook after step → loss event, progress and ETA → a metrics record every LOG_EVERY →
    preview every `preview_every` → checkpoint every `checkpoint_every` → hook after.

Stages are objects looked up by name in `STAGE_TYPES` (timm-style registry: a decorator and a
dict); adding a stage is adding one class. The runner also owns the job's clock (`RunClock`),
saved in every checkpoint and read back on resume, so `time_s` in metrics.jsonl is continuous
across a stop, and the evaluation record (`evaluate`), so every stage scores alike.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from murid_engine.checkpoint import capture_rng, save_checkpoint
from murid_engine.devices import Precision, optimiser_step
from murid_engine.distributed import DistContext, RanksAgree
from murid_engine.jobs import (Control, EtaEstimator, EvaluationResult, EventSink, Losses, Message, StageFinished,
                               StageStarted, StopRequested)
from murid_engine.project import Project
from murid_engine.records import EvaluationRecord, LossRecord
from murid_engine.run_config import RunConfig

from .loader import Batch, TrainingBatches
from .optim import set_lr
from .previews import PreviewStrip
from .sharded_eval import evaluate_sharded

LOG_EVERY = 10  # iterations between loss records in metrics.jsonl


class RunClock:
    """Seconds a job has run, continued from a checkpoint's `elapsed_s` when it resumes."""

    def __init__(self, before: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start = clock()
        self.before = before

    def resume_from(self, seconds: float) -> None:
        self.before, self._start = float(seconds), self._clock()

    def elapsed(self) -> float:
        return round(self.before + self._clock() - self._start, 2)


@dataclass
class JobContext:
    """What every stage of one job shares: the project, its config, where events go, the ranks,
    the device and precision, the job's clock and random stream."""
    project: Project
    cfg: RunConfig
    sink: EventSink
    control: Control
    dist: DistContext
    np_rng: np.random.Generator
    clock: RunClock = field(default_factory=RunClock)
    strip: PreviewStrip | None = None  # rank 0's preview images; None: no previews

    def __post_init__(self) -> None:
        self.device = self.dist.device
        self.precision = Precision.choose(self.device.type, self.cfg.amp)
        self.scaler = self.precision.scaler(self.device)

    def record(self, record: Any) -> None:
        """A metrics.jsonl line (a records.py dataclass), written by rank 0 only."""
        if self.dist.is_main:
            self.project.append_metrics(record.to_json())

    def evaluate(self, stage: str, name: str, model: nn.Module, dataset, iteration: int,
                 round_no: int | None = None) -> EvaluationRecord | None:
        """Score `model` on the labelled val split (sharded over the ranks), record it, tell the sink."""
        if dataset is None or not dataset.has_labels:
            return None
        scores = evaluate_sharded(model, dataset, self.dist, desc=f"evaluate {name}",
                                  size=self.cfg.data.target_size)
        record = EvaluationRecord.of(scores, stage, name, iteration, round_no, self.clock.elapsed())
        self.record(record)
        self.sink(EvaluationResult(name, record.scores_json()))
        return record


@dataclass
class SavedState:
    """What a stage's resume point holds besides the optimiser, the stage and the iteration."""
    file: str  # checkpoint name in the project (checkpoints/<file>.pt)
    models: dict[str, nn.Module]
    extra: dict[str, Any] = field(default_factory=dict)


class Stage:
    """One training stage. Subclasses set `name` and implement the abstract parts."""
    name: str = ""
    lr_setting: str = "optim.lr"  # the setting a diverging loss's message tells the user to lower
    rounds: int | None = None  # curriculum rounds, for progress

    def __init__(self, job: JobContext):
        self.job = job
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ what a stage supplies
    @classmethod
    def length(cls, cfg: RunConfig) -> int:
        """Optimiser steps of this stage in a run of `cfg`."""
        raise NotImplementedError

    @classmethod
    def enabled(cls, cfg: RunConfig) -> bool:
        """False when `cfg` skips the stage although it is listed (an ablation)."""
        return True

    @property
    def total(self) -> int:
        return self.length(self.job.cfg)

    @property
    def base_lr(self) -> float:
        return self.job.cfg.lr_of(self.name)

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        """Build the optimiser (restoring `optimizer_state` of a resumed stage) and the trained module."""
        raise NotImplementedError

    def batch(self, it: int) -> Batch:
        raise NotImplementedError

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        """The named loss parts of iteration `it` (called under autocast; the runner steps)."""
        raise NotImplementedError

    def saved_state(self) -> SavedState:
        raise NotImplementedError

    def finish(self) -> None:
        """The stage ended: its final files and evaluation (the resume point is saved already)."""

    # ------------------------------------------------------------------ optional hooks
    def round_of(self, it: int) -> int | None:
        return None

    def before_iteration(self, it: int) -> None:
        pass

    def after_step(self, it: int) -> None:
        pass

    def after_iteration(self, done: int) -> None:
        """`done` iterations are complete (not called after the last: `finish` is)."""

    def preview_model(self) -> nn.Module | None:
        return None

    def close(self) -> None:
        """Release what the stage holds (e.g. DDP hooks) before the next stage begins."""


STAGE_TYPES: dict[str, type[Stage]] = {}


def register_stage(name: str):
    """Class decorator: the stage called `name` in configs, checkpoints and metrics."""
    def add(cls: type[Stage]) -> type[Stage]:
        cls.name = name
        STAGE_TYPES[name] = cls
        return cls
    return add


def optimise(losses: Mapping[str, torch.Tensor], ctx: DistContext, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, what: str, it: int, lr_setting: str) -> dict[str, float]:
    """One optimiser step on the sum of `losses`; returns the parts and 'total', rank-averaged.

    A non-finite total stops every rank at this iteration (the averages are the same on all)
    with one sentence naming the learning-rate setting to lower.
    """
    values = ctx.mean_values(losses)
    values["total"] = sum(values.values())
    if not math.isfinite(values["total"]):
        raise RanksAgree(f"the {what} loss became {values['total']} at iteration {it + 1}; "
                         f"lower the learning rate (--set {lr_setting}=...)")
    optimiser_step(sum(losses.values()), optimizer, scaler)
    return values


class StageRunner:
    """Runs stages of one job through the one loop."""

    def __init__(self, job: JobContext):
        self.job = job

    def save(self, stage: Stage, it: int) -> None:
        """The stage's resume point (rank 0 writes; the clock and rank 0's random streams in it)."""
        job = self.job
        if not job.dist.is_main:
            return
        state = stage.saved_state()
        save_checkpoint(job.project.checkpoint_path(state.file), config=job.cfg, models=state.models,
                        stage=stage.name, iteration=it, optimizer=stage.optimizer,
                        rng=capture_rng(job.np_rng),
                        extra={**state.extra, "elapsed_s": job.clock.elapsed()})

    def run(self, stage: Stage, first: int = 0, optimizer_state: dict | None = None,
            later: list[int] | None = None) -> bool:
        """Train `stage` from iteration `first`; False when stopped (a checkpoint was saved).

        `later`: the lengths of the job's stages after this one, for the whole job's ETA.
        """
        job, cfg = self.job, self.job.cfg
        total, lr = stage.total, stage.base_lr
        job.sink(StageStarted(stage.name))
        stage.begin(first, optimizer_state if first > 0 else None)
        eta = EtaEstimator()
        eta.start(total, first)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        it = first
        try:
            while it < total:
                try:
                    stage.before_iteration(it)  # e.g. a curriculum round's pseudo-label pass
                except StopRequested:
                    self.save(stage, it)
                    job.sink(Message(f"stopped before {stage.name} iteration {it}; checkpoint saved"))
                    return False
                # Rank 0's stop (or any rank's Ctrl+C) stops every rank at this same iteration.
                if job.dist.any(job.control.checkpoint(on_resume=eta.mark_resumed)):
                    self.save(stage, it)
                    job.sink(Message(f"stopped at {stage.name} iteration {it}; checkpoint saved"))
                    return False
                set_lr(stage.optimizer, cfg.optim, lr, it, total)
                batch = stage.batch(it)
                with job.precision.autocast_context(job.device):
                    losses = stage.step(batch, it)
                values = optimise(losses, job.dist, stage.optimizer, job.scaler, stage.name, it,
                                  stage.lr_setting)
                stage.after_step(it)
                it += 1
                for k, v in values.items():
                    sums[k] += v
                count += 1
                round_no = stage.round_of(it - 1)
                job.sink(Losses(stage.name, it, values))
                eta.update(it)
                job.sink(eta.progress(stage.name, round_no, stage.rounds, later=later))
                if it % LOG_EVERY == 0 or it == total:
                    job.record(LossRecord(stage.name, it, round_no, job.clock.elapsed(),
                                          {k: v / count for k, v in sums.items()}))
                    sums.clear()
                    count = 0
                if job.strip is not None and cfg.preview_every and it % cfg.preview_every == 0:
                    model = stage.preview_model()
                    if model is not None:
                        job.strip.emit(job.sink, stage.name, it, model)  # rank 0 only
                if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < total:
                    self.save(stage, it)
                if it < total:
                    stage.after_iteration(it)
            self.save(stage, total)
            stage.finish()
        finally:
            stage.close()
        job.sink(StageFinished(stage.name))
        return True
