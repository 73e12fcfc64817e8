"""The MURID teacher's training job: warmup → adapt → curriculum, in a project, resumable.

The job emits events (murid_engine.jobs) and obeys a Control between iterations; a stop saves
checkpoints/latest.pt first. Checkpoints hold the teacher, the EMA teacher (curriculum), the
optimiser, the stage, the iteration and every RNG state, so `run(resume=True)` continues where
a stop or a kill -9 left off, losing at most `checkpoint_every` iterations. Only this object
writes into the project while it runs.

Files of a run: checkpoints/latest.pt (the resume point), checkpoints/source_only.pt (the
network after warmup: the lower-bound reference), checkpoints/teacher.pt (the adapted teacher
with its source bank: what evaluate, predict and distil use), rounds/round_NN (pseudo-labels),
metrics.jsonl (losses every `LOG_EVERY` iterations, evaluations, round summaries).

Under torchrun (murid_engine.distributed) every rank runs this job: the network is trained in
DistributedDataParallel, each rank draws its own batches, losses are averaged over the ranks,
pseudo-labelling and evaluation are sharded, and only rank 0 writes into the project.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from murid_engine.allocator import keep_freed_memory
from murid_engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from murid_engine.devices import Precision, resolve_device
from murid_engine.distributed import DistContext, evaluate_sharded, optimise, wrap_teacher
from murid_engine.errors import UserError
from murid_engine.jobs import (
    Control,
    EtaEstimator,
    EvaluationResult,
    EventSink,
    Losses,
    Message,
    NullSink,
    RoundReady,
    StageFinished,
    StageStarted,
)
from murid_engine.models.banked import BankedTeacher, bank_to_state
from murid_engine.models.pretrained import load_pretrained
from murid_engine.models.teacher import MuridTeacher, SourceBank
from murid_engine.project import Project
from murid_engine.run_config import RunConfig

from .domains import Domains, bank_images
from .ema import make_ema, update_ema
from .image_cache import CachedImages, project_cache_dir
from .loader import RoundLabels, TrainingBatches
from .optim import build_sgd, set_lr
from .previews import PreviewStrip
from .round_labels import label_round, round_portion
from .steps import Batch, adapt_step, curriculum_step, warmup_step

TEACHER_STAGES = ("warmup", "adapt", "curriculum")
LOG_EVERY = 10  # iterations between loss records in metrics.jsonl
__all__ = ["TeacherTrainer", "resolve_device"]  # resolve_device: the commands import it from here


@dataclass
class Position:
    """Where the job stands: the stage running and the optimiser steps done in it."""
    stage: str
    iteration: int = 0


class TeacherTrainer:
    def __init__(self, project: Project, sink: EventSink | None = None, control: Control | None = None,
                 dist: DistContext | None = None):
        keep_freed_memory()  # per-iteration buffers reuse the heap (allocator.py)
        self.project = project
        self.cfg: RunConfig = project.config
        self.sink = sink or NullSink()
        self.control = control or Control()
        self.dist = (dist or DistContext()).on_device(self.cfg.device)
        self.device = self.dist.device
        self.precision = Precision.choose(self.device.type, self.cfg.amp)
        self.scaler = self.precision.scaler(self.device)
        self.np_rng = np.random.default_rng(self.cfg.seed)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every rank
        self.model = self.precision.model(MuridTeacher(self.cfg.model, self.cfg.mr).to(self.device))
        self.dist.reseed_rank(self.cfg.seed, self.np_rng, self.gen)
        self.trained: torch.nn.Module = self.model  # what the steps call: the model, or its DDP view
        self.ema: MuridTeacher | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._saved_optimizer: dict | None = None  # a resumed stage's optimiser state, used once
        self.domains: Domains | None = None
        self.batches: TrainingBatches | None = None
        self.strip: PreviewStrip | None = None
        self.started = time.monotonic()

    # ---------------------------------------------------------------------------- the job
    def stages(self) -> list[str]:
        """The teacher stages this run executes (a disabled curriculum is skipped)."""
        out = [s for s in self.cfg.stages if s in TEACHER_STAGES]
        if not self.cfg.curriculum.enabled and "curriculum" in out:
            out.remove("curriculum")
        return out

    def stage_length(self, stage: str) -> int:
        if stage == "curriculum":
            c = self.cfg.curriculum
            return c.rounds * c.iterations_per_round
        return getattr(self.cfg, stage).iterations

    def run(self, resume: bool = False) -> bool:
        """Train every teacher stage; False when stopped by the control (a checkpoint is saved)."""
        stages = self.stages()
        if not stages:
            return True
        start = self._resume_point(stages) if resume else Position(stages[0])
        if not resume and self.project.latest_checkpoint() is not None:
            raise UserError(f"{self.project.root} already holds a training run; "
                            "continue it with --resume, or train in a new project folder")
        if self.project.latest_checkpoint() is None and self.cfg.model.pretrained:
            report = self.dist.main_first(
                lambda: load_pretrained(self.model.net.backbone, self.cfg.model.pretrained))
            self.sink(Message(report.summary()))
        # main_first: rank 0 decodes the cache (or finds a missing dataset) before the others.
        self.domains = self.dist.main_first(
            lambda: Domains.load(self.cfg, project_cache_dir(self.project.root)))
        self.batches = TrainingBatches(self.domains.source, self.domains.target, self.cfg.data,
                                       self.cfg.seed, self.device,
                                       rank=self.dist.rank, world_size=self.dist.world_size)
        self.strip = PreviewStrip.choose(self.domains, self.device) if self.dist.is_main else None
        for stage in stages[stages.index(start.stage):]:
            first = start.iteration if stage == start.stage else 0
            if not self._run_stage(stage, first):
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
            restore_rng(ckpt.rng, self.np_rng)
        if "torch_generator" in ckpt.extra:
            self.gen.set_state(ckpt.extra["torch_generator"])
        self._saved_optimizer = ckpt.optimizer
        stage, it = ckpt.stage, ckpt.iteration
        # The checkpoint holds rank 0's random streams; the other ranks draw their own.
        self.dist.reseed_rank(self.cfg.seed, self.np_rng, self.gen, salt=1 + it)
        if stage not in stages:  # a finished teacher: nothing left of these stages
            stage, it = stages[-1], self.stage_length(stages[-1])
        order = {s: i for i, s in enumerate(stages)}
        if self.dist.is_main:
            self.project.rewind_metrics(
                lambda r: "stage" not in r or r["stage"] not in order
                or (order[r["stage"]], r.get("iteration", 0)) <= (order[stage], it))
        self.sink(Message(f"resumed from {path} at {stage} iteration {it}"))
        return Position(stage, it)

    # -------------------------------------------------------------------------- one stage
    def _run_stage(self, stage: str, first: int) -> bool:
        total = self.stage_length(stage)
        cfg = self.cfg
        self.sink(StageStarted(stage))
        lr = cfg.lr_of(stage)
        self.optimizer = build_sgd(self.model, cfg.optim, lr, head=self.model.net.classifier,
                                   mr=self.model.mr)
        if first > 0 and self._saved_optimizer is not None:
            self.optimizer.load_state_dict(self._saved_optimizer)
        self._saved_optimizer = None
        if stage == "curriculum" and self.ema is None:
            self.ema = make_ema(self.model)
        self.trained = self.model
        gc.collect()  # the previous stage's DDP must be gone: its hooks sit on the same parameters
        self.trained = wrap_teacher(self.dist, self.model, stage)
        eta = EtaEstimator()
        eta.start(total, first)
        later = self._later_iterations(stage)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        round_no = None
        it = first
        while it < total:
            if stage == "curriculum":
                r = it // cfg.curriculum.iterations_per_round + 1
                if r != round_no:
                    round_no = r
                    target = self._prepare_round(r)
            else:
                target = self.domains.target
            # Rank 0's stop (or any rank's Ctrl+C) stops every rank at this same iteration.
            if self.dist.any(self.control.checkpoint(on_resume=eta.mark_resumed)):
                self._save(stage, it)
                self.sink(Message(f"stopped at {stage} iteration {it}; checkpoint saved"))
                return False
            set_lr(self.optimizer, cfg.optim, lr, it, total)
            batch = self._batch(stage, it, target)
            values = self._step(stage, batch, it)
            it += 1
            for k, v in values.items():
                sums[k] += v
            count += 1
            self.sink(Losses(stage, it, values))
            eta.update(it)
            rounds = (cfg.curriculum.rounds if stage == "curriculum" else None)
            self.sink(eta.progress(stage, round_no, rounds, later=later))
            if it % LOG_EVERY == 0 or it == total:
                self._record({"kind": "losses", "stage": stage, "iteration": it,
                              "round": round_no, "time_s": self._elapsed(),
                              **{k: v / count for k, v in sums.items()}})
                sums.clear()
                count = 0
            if self.strip is not None and cfg.preview_every and it % cfg.preview_every == 0:
                self.strip.emit(self.sink, stage, it, self._inference_model(stage))  # rank 0 only
            if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < total:
                self._save(stage, it)
            if stage == "curriculum" and it % cfg.curriculum.iterations_per_round == 0 and it < total:
                # A score per round shows the curriculum's progress (the last one is the stage's).
                self._evaluate(stage, "teacher", self._inference_model(stage), it, round_no)
        self._finish_stage(stage, total)
        self.sink(StageFinished(stage))
        return True

    def _later_iterations(self, stage: str) -> list[int]:
        stages = self.stages()
        return [self.stage_length(s) for s in stages[stages.index(stage) + 1:]]

    def _batch(self, stage: str, it: int, target: CachedImages) -> Batch:
        """The batch of iteration `it`: a function of (seed, stage, it), so a resumed run repeats it."""
        stop = self.stage_length(stage)
        if stage == "curriculum":  # the next round has other labels: no batch is made ahead for it
            per_round = self.cfg.curriculum.iterations_per_round
            stop = min(stop, (it // per_round + 1) * per_round)
        b = self.batches.get(stage, it, stop, None if stage == "warmup" else target)
        return Batch(b.source, b.source_labels, b.target, b.target_labels)

    def _step(self, stage: str, batch: Batch, it: int) -> dict[str, float]:
        """One optimiser step; the loss parts (and 'total') averaged over the ranks."""
        self.model.train()
        batch = replace(batch, **{f.name: self.precision.inputs(getattr(batch, f.name))
                                  for f in fields(batch)})
        with self.precision.autocast_context(self.device):
            if stage == "warmup":
                losses = warmup_step(self.trained, batch, self.cfg)
            elif stage == "adapt":
                losses = adapt_step(self.trained, batch, self.cfg)
            else:
                losses = curriculum_step(self.trained, self.ema, batch, self.cfg, self.gen)
        values = optimise(losses, self.dist, self.optimizer, self.scaler, stage, it, "optim.lr")
        if stage == "curriculum":
            update_ema(self.ema, self.model, self.cfg.curriculum.ema_decay, it)
        return values

    # ------------------------------------------------------------------------ curriculum
    def _prepare_round(self, r: int) -> CachedImages:
        """Round r's training labels: labelled now, or read back when a resumed run made them."""
        project = self.project
        if self.dist.agree(lambda: r not in project.rounds()):  # rank 0 decides for all
            portion = round_portion(project, r)
            self.sink(Message(f"curriculum round {r}: pseudo-labelling "
                              f"{len(self.domains.target)} target images (portion {portion:g})"))
            teacher = BankedTeacher(self.ema, self._bank(self.ema))
            info = label_round(project, r, portion, teacher, self.device, other=self.model.net,
                               dist=self.dist)
            summary = {k: info[k] for k in ("portion", "kept_fraction")}
            self._record({"kind": "round", "stage": "curriculum", "round": r,
                          "iteration": (r - 1) * self.cfg.curriculum.iterations_per_round,
                          "time_s": self._elapsed(), **summary, "thresholds": info["thresholds"]})
            self.sink(RoundReady(r, str(project.round_dir(r)), info["portion"], summary))
        labels = RoundLabels(project, r)  # read per batch from the round's files, not held
        labels.check(self.domains.target.stems)
        return self.domains.target.with_labels(labels)

    # ---------------------------------------------------------------------- saving, eval
    def _bank(self, model: MuridTeacher) -> SourceBank:
        images = bank_images(self.domains.source, self.cfg.mr.bank_size, self.cfg.seed)
        batches, group = [], []
        for img in images:  # same-size images share a batch (the source stream's BN statistics)
            if group and (img.shape != group[0].shape or len(group) == self.cfg.data.batch_size):
                batches.append(torch.stack(group))
                group = []
            group.append(img)
        batches.append(torch.stack(group))
        model.eval()
        return model.build_source_bank(batches, max_items=len(images))

    def _inference_model(self, stage: str) -> torch.nn.Module:
        if stage == "warmup" or not self.model.points:
            return self.model.net
        model = self.ema if stage == "curriculum" and self.ema is not None else self.model
        return BankedTeacher(model, self._bank(model))

    def _save(self, stage: str, it: int) -> None:
        if not self.dist.is_main:
            return
        models = {"teacher": self.model}  # the unwrapped module: the single-process format
        if self.ema is not None:
            models["ema"] = self.ema
        save_checkpoint(self.project.checkpoint_path(), config=self.cfg, models=models,
                        stage=stage, iteration=it, optimizer=self.optimizer,
                        rng=capture_rng(self.np_rng),
                        extra={"torch_generator": self.gen.get_state(), "elapsed_s": self._elapsed()})

    def _finish_stage(self, stage: str, total: int) -> None:
        self._save(stage, total)
        main = self.dist.is_main
        if stage == "warmup":
            if main:
                save_checkpoint(self.project.checkpoint_path("source_only"), config=self.cfg,
                                models={"net": self.model.net}, stage=stage, iteration=total)
            self._evaluate(stage, "source_only", self.model.net)
            return
        final = self.ema if stage == "curriculum" else self.model
        bank = self._bank(final)
        if main:
            save_checkpoint(self.project.checkpoint_path("teacher"), config=self.cfg,
                            models={"teacher": final, "bank": bank_to_state(bank)},
                            stage=stage, iteration=total)
        self._evaluate(stage, "teacher", BankedTeacher(final, bank))

    def _evaluate(self, stage: str, name: str, model: torch.nn.Module, it: int | None = None,
                  round_no: int | None = None) -> None:
        if self.domains is None or not self.domains.val_labelled:
            return
        scores = evaluate_sharded(model, self.domains.val, self.dist, desc=f"evaluate {name}",
                                  size=self.cfg.data.target_size)
        record = scores.to_json()
        it = self.stage_length(stage) if it is None else it
        if stage == "curriculum" and round_no is None:
            round_no = self.cfg.curriculum.rounds
        self._record({"kind": "eval", "stage": stage, "model": name, "iteration": it,
                      "round": round_no, "time_s": self._elapsed(),
                      "miou": record["miou"], "per_class_iou": record["per_class_iou"],
                      "pixel_acc": record["pixel_acc"]})
        self.sink(EvaluationResult(name, record))

    def _record(self, record: dict) -> None:
        """A metrics.jsonl line, written by rank 0 only (the values are already the ranks')."""
        if self.dist.is_main:
            self.project.append_metrics(record)

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)
