"""The MURID teacher's training job: warmup → adapt → curriculum, in a project, resumable.

The job builds what its stages share (training/teacher_stages.py), finds where to start (a
resumed run continues at the checkpoint's stage and iteration) and hands each stage to the one
training loop (training/runner.py), which emits the events, obeys the Control, writes the
metrics and saves checkpoints/latest.pt on a stop. Checkpoints hold the teacher, the EMA teacher
(curriculum), the optimiser, the stage, the iteration, the job's clock and every RNG state, so
`run(resume=True)` continues where a stop or a kill -9 left off, losing at most
`checkpoint_every` iterations. Only this job writes into the project while it runs.

Files of a run: checkpoints/latest.pt (the resume point), checkpoints/source_only.pt (the
network after warmup: the lower-bound reference), checkpoints/teacher.pt (the adapted teacher
with its source bank: what evaluate, predict and distil use), rounds/round_NN (pseudo-labels),
metrics.jsonl (records.py: losses every `LOG_EVERY` iterations, evaluations, round summaries).

Under torchrun (murid_engine.distributed) every rank runs this job: the network is trained in
DistributedDataParallel, each rank draws its own batches, losses are averaged over the ranks,
pseudo-labelling and evaluation are sharded, and only rank 0 writes into the project.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from murid_engine.allocator import keep_freed_memory
from murid_engine.checkpoint import load_checkpoint, restore_rng
from murid_engine.devices import Precision
from murid_engine.distributed import DistContext
from murid_engine.jobs import Control, EventSink, Message, NullSink
from murid_engine.models.banked import BankedTeacher
from murid_engine.models.pretrained import load_pretrained
from murid_engine.models.teacher import MuridTeacher
from murid_engine.project import Project
from murid_engine.usecases import check_can_train
from murid_engine.run_config import RunConfig

from .domains import Domains
from .ema import make_ema
from .image_cache import project_cache_dir
from .loader import TrainingBatches
from .previews import PreviewStrip
from .runner import LOG_EVERY, STAGE_TYPES, JobContext, Stage, StageRunner
from .teacher_stages import TeacherParts

TEACHER_STAGES = ("warmup", "adapt", "curriculum")
__all__ = ["TeacherTrainer", "TEACHER_STAGES", "LOG_EVERY"]


@dataclass
class Position:
    """Where the job stands: the stage running and the optimiser steps done in it."""
    stage: str
    iteration: int = 0


class TeacherTrainer:
    def __init__(self, project: Project, sink: EventSink | None = None, control: Control | None = None,
                 dist: DistContext | None = None, reference_name: str = "source_only"):
        keep_freed_memory()  # per-iteration buffers reuse the heap (allocator.py)
        self.project = project
        self.cfg: RunConfig = project.config
        dist = (dist or DistContext()).on_device(self.cfg.device)
        np_rng = np.random.default_rng(self.cfg.seed)
        self.job = JobContext(project, self.cfg, sink or NullSink(), control or Control(), dist, np_rng)
        self.dist, self.sink = dist, self.job.sink  # the job's, for short
        self.device = dist.device
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every rank
        self.model = Precision.choose(self.device.type, self.cfg.amp).model(
            MuridTeacher(self.cfg.model, self.cfg.mr).to(self.device))
        dist.reseed_rank(self.cfg.seed, np_rng, self.gen)
        self.reference_name = reference_name
        self.ema: MuridTeacher | None = None
        self._saved_optimizer: dict | None = None  # a resumed stage's optimiser state, used once
        self.domains: Domains | None = None
        self.batches: TrainingBatches | None = None
        self.current: Stage | None = None  # the stage running
        self.parts: TeacherParts | None = None  # what the stages share, once `run` has begun

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The running stage's optimiser (the speed benchmark steps it in its bare loop)."""
        return None if self.current is None else self.current.optimizer

    def banked(self, model: MuridTeacher) -> BankedTeacher:
        """`model` (the teacher or its EMA copy) with this run's source bank, as it labels and scores."""
        return self.parts.banked(model, self.cfg)

    # ---------------------------------------------------------------------------- the job
    def stages(self) -> list[str]:
        """The teacher stages this run executes (a disabled curriculum is skipped)."""
        return [s for s in self.cfg.stages if s in TEACHER_STAGES and STAGE_TYPES[s].enabled(self.cfg)]

    def stage_length(self, stage: str) -> int:
        return STAGE_TYPES[stage].length(self.cfg)

    def run(self, resume: bool = False) -> bool:
        """Train every teacher stage; False when stopped by the control (a checkpoint is saved)."""
        stages = self.stages()
        if not stages:
            return True
        start = self._resume_point(stages) if resume else Position(stages[0])
        check_can_train(self.project, resume)
        if start.iteration == 0 and start.stage == stages[0] and self.dist.is_main:
            # No resume point: what metrics.jsonl holds of these stages is a lost attempt's.
            self.project.forget_unsaved_progress(stages)
        if self.project.latest_checkpoint() is None and self.cfg.model.pretrained:
            report = self.dist.main_first(
                lambda: load_pretrained(self.model.net.backbone, self.cfg.model.pretrained))
            self.sink(Message(report.summary()))
        # main_first: rank 0 decodes the cache (or finds a missing dataset) before the others.
        self.domains = self.dist.main_first(
            lambda: Domains.load(self.cfg, project_cache_dir(self.project.root), self.sink))
        mr = self.cfg.mr
        self.batches = TrainingBatches(self.domains.source, self.domains.target, self.cfg.data,
                                       self.cfg.seed, self.device,
                                       rank=self.dist.rank, world_size=self.dist.world_size,
                                       partner_candidates=mr.partner_candidates
                                       if mr.enabled and mr.partners == "content" else 0,
                                       num_classes=self.cfg.model.num_classes)
        if self.dist.is_main:
            self.job.strip = PreviewStrip.choose(self.domains, self.device)
        parts = self.parts = TeacherParts(self.model, self.gen, self.domains, self.batches,
                                          self.reference_name, ema=self.ema)
        runner = StageRunner(self.job)
        todo = stages[stages.index(start.stage):]
        for i, name in enumerate(todo):
            first = start.iteration if name == start.stage else 0
            stage = self.current = STAGE_TYPES[name](self.job, parts)
            later = [self.stage_length(s) for s in todo[i + 1:]]
            finished = runner.run(stage, first, self._saved_optimizer, later=later)
            self._saved_optimizer = None
            self.ema = parts.ema
            if not finished:
                return False
        return True

    def _resume_point(self, stages: list[str]) -> Position:
        path = self.project.latest_checkpoint()
        if path is None:
            self.sink(Message(f"no checkpoint in {self.project.root}: starting from the beginning"))
            return Position(stages[0])
        if self.dist.is_main:
            self.project.clean_temp_files()
        ckpt = self.dist.main_first(lambda: load_checkpoint(path))  # every rank reads the same file
        self.model.load_state_dict(ckpt.model_state("teacher"))
        if "ema" in ckpt.models:
            self.ema = make_ema(self.model)
            self.ema.load_state_dict(ckpt.models["ema"])
        if ckpt.rng is not None:
            restore_rng(ckpt.rng, self.job.np_rng)
        if "torch_generator" in ckpt.extra:
            self.gen.set_state(ckpt.extra["torch_generator"])
        self.job.clock.resume_from(float(ckpt.extra.get("elapsed_s", 0.0)))
        self._saved_optimizer = ckpt.optimizer
        stage, it = ckpt.stage, ckpt.iteration
        # The checkpoint holds rank 0's random streams; the other ranks draw their own.
        self.dist.reseed_rank(self.cfg.seed, self.job.np_rng, self.gen, salt=1 + it)
        if stage not in stages:  # a finished teacher: nothing left of these stages
            stage, it = stages[-1], self.stage_length(stages[-1])
        order = {s: i for i, s in enumerate(stages)}
        if self.dist.is_main:
            self.project.rewind_metrics(
                lambda r: "stage" not in r or r["stage"] not in order
                or (order[r["stage"]], r.get("iteration", 0)) <= (order[stage], it))
        self.sink(Message(f"resumed from {path} at {stage} iteration {it}"))
        return Position(stage, it)


