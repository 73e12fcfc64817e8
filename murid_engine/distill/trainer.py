"""Information Distillation (DESIGN.md §2): the single-branch student, trained against the teacher.

The job reads checkpoints/teacher.pt (the adapted teacher with its source bank) and the latest
complete pseudo-label round, and trains a DeepLabV2 of `config.student_model` on target crops:
KL to the teacher's predictions, hints at the MR points, and cross-entropy on the source labels
and on the round's confident pseudo-labels (see `losses`). With `distill.from_teacher` false
(the --no-distill ablation) only the two cross-entropies remain and the teacher is not run.

Like the teacher's trainer it emits events, obeys a Control between iterations and is
resumable: checkpoints/latest_student.pt holds the student, its adapters, the optimiser, the
iteration and every RNG state. When it ends it writes checkpoints/student.pt ({'student': the
network}, the config inside) and evaluates the student on the target val split.

Under torchrun (murid_engine.distributed) the student and its adapters train in
DistributedDataParallel through `StudentLosses`, and only rank 0 writes into the project.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from murid_engine.allocator import keep_freed_memory
from murid_engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from murid_engine.devices import Precision
from murid_engine.distributed import DistContext, evaluate_sharded, optimise
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
from murid_engine.models.pretrained import load_pretrained
from murid_engine.models.teacher import own_batch_stats
from murid_engine.project import Project
from murid_engine.training.domains import Domains
from murid_engine.training.image_cache import CachedImages, project_cache_dir
from murid_engine.training.loader import RoundLabels, TrainingBatches
from murid_engine.training.optim import build_sgd, set_lr
from murid_engine.training.previews import PreviewStrip
from murid_engine.training.round_labels import label_round, round_portion
from murid_engine.run_config import DistillConfig
from murid_engine.training.trainer import LOG_EVERY

from .losses import StudentOutputs, distill_losses
from .student import FeatureAdapters, LoadedTeacher, build_student, load_teacher, student_forward

STAGE = "distill"
RESUME = "latest_student"  # checkpoints/latest_student.pt: where a stopped distillation resumes
FINAL = "student"  # checkpoints/student.pt: what evaluate, predict and export use
SEED_OFFSET = 104729  # the student draws other crops than the teacher did with the same seed


class StudentLosses(nn.Module):
    """The student's training forward and its loss parts in one module: one call of it runs
    both of the student's passes (target and source crops) and the adapters, so under DDP one
    forward through the wrapper covers every trained parameter (DDP averages gradients only
    for forwards made through it). Parameter names and order are those of
    {'student', 'adapters'}, so optimiser states load either way."""

    def __init__(self, student: nn.Module, adapters: FeatureAdapters, cfg: DistillConfig,
                 points: tuple[int, ...]):
        super().__init__()
        self.student = student
        self.adapters = adapters
        self.cfg = cfg
        self.points = points

    def uses_every_parameter(self) -> bool:
        """False when a part of the module takes no part in any loss (DDP must then look for it)."""
        c = self.cfg
        hints = c.from_teacher and c.feature_weight > 0 and bool(self.adapters.points)
        head = (c.from_teacher and c.kl_weight > 0) or c.pseudo_ce_weight > 0 or c.source_ce_weight > 0
        return hints and head

    def forward(self, xt: torch.Tensor, yt: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                teacher_logits: torch.Tensor | None = None,
                teacher_features: dict[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        out = StudentOutputs(*student_forward(self.student, xt, self.points), pseudo_labels=yt)
        if self.cfg.source_ce_weight > 0:
            # The source crop is normalised with its own batch statistics and leaves the
            # running statistics alone: they stay the target's (DESIGN.md §2, BatchNorm).
            with own_batch_stats(self.student, update_running=False):
                out.source_logits = self.student(xs)["out"]
            out.source_labels = ys
        out.teacher_logits, out.teacher_features = teacher_logits, teacher_features
        return distill_losses(out, self.cfg, self.adapters)


class StudentTrainer:
    def __init__(self, project: Project, sink: EventSink | None = None,
                 control: Control | None = None, domains: Domains | None = None,
                 dist: DistContext | None = None):
        keep_freed_memory()  # per-iteration buffers reuse the heap (allocator.py)
        self.project = project
        self.cfg = project.config
        self.sink = sink or NullSink()
        self.control = control or Control()
        self.dist = (dist or DistContext()).on_device(self.cfg.device)
        self.device = self.dist.device
        self.precision = Precision.choose(self.device.type, self.cfg.amp)
        self.scaler = self.precision.scaler(self.device)
        self.domains = domains
        seed = self.cfg.seed + SEED_OFFSET
        self.np_rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.dist.reseed_rank(seed, self.np_rng)
        self.trained: nn.Module | None = None  # StudentLosses, or its DDP wrapper
        self.teacher: LoadedTeacher | None = None
        self.student: nn.Module | None = None
        self.adapters: FeatureAdapters | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.batches: TrainingBatches | None = None
        self.started = time.monotonic()
        self.elapsed_before = 0.0

    @staticmethod
    def has_resume_point(project: Project) -> bool:
        return project.checkpoint_path(RESUME).is_file()

    @property
    def total(self) -> int:
        return self.cfg.distill.iterations

    # ---------------------------------------------------------------------------- the job
    def run(self, resume: bool = False) -> bool:
        """Distil the student; False when stopped by the control (a checkpoint is saved)."""
        self.teacher = self.dist.main_first(self._load_teacher)
        self.precision.model(self.teacher.model)
        init = build_student(self.cfg.student_model, self.teacher.state, self.teacher.cfg)
        self.student = self.precision.model(init.net.to(self.device))
        self.adapters = self.precision.model(FeatureAdapters(
            self.student.backbone.stage_channels, self.teacher.channels, self.teacher.points).to(self.device))
        first, saved_optimizer = 0, None
        resume_path = self.project.checkpoint_path(RESUME)
        if resume and self.dist.agree(resume_path.is_file):
            first, saved_optimizer = self._restore(resume_path)
        else:
            if self.dist.is_main:
                resume_path.unlink(missing_ok=True)
                # A new distillation replaces the records of an earlier one.
                self.project.rewind_metrics(lambda r: r.get("stage") != STAGE)
            self.sink(Message(init.note))
            if init.copied == 0 and self.cfg.student_model.pretrained:
                # A student of another backbone starts from the user's ImageNet file, if given.
                report = self.dist.main_first(
                    lambda: load_pretrained(self.student.backbone, self.cfg.student_model.pretrained))
                self.sink(Message(report.summary()))
        if first >= self.total and self.project.checkpoint_path(FINAL).is_file():
            self.sink(Message("the student is already distilled; nothing to resume"))
            return True
        if self.domains is None:
            self.domains = self.dist.main_first(
                lambda: Domains.load(self.cfg, project_cache_dir(self.project.root)))
        target = self._pseudo_labelled_target()
        return self._train(target, first, saved_optimizer)

    def _load_teacher(self) -> LoadedTeacher:
        path = self.project.checkpoint_path("teacher")
        if not path.is_file():
            raise UserError(f"{self.project.root} has no trained teacher yet ({path.name}); "
                            "run `murid train` (its adapt or curriculum stage) first")
        return load_teacher(path, self.device)

    def _restore(self, path) -> tuple[int, dict | None]:
        if self.dist.is_main:
            self.project.clean_temp_files()
        ckpt = self.dist.main_first(lambda: load_checkpoint(path))  # every rank reads the same file
        self.student.load_state_dict(ckpt.model_state("student"))
        self.adapters.load_state_dict(ckpt.model_state("adapters"))
        if ckpt.rng is not None:
            restore_rng(ckpt.rng, self.np_rng)
        self.elapsed_before = float(ckpt.extra.get("elapsed_s", 0.0))
        it = ckpt.iteration
        # The checkpoint holds rank 0's random streams; the other ranks draw their own.
        self.dist.reseed_rank(self.cfg.seed + SEED_OFFSET, self.np_rng, salt=1 + it)
        if self.dist.is_main:
            self.project.rewind_metrics(lambda r: r.get("stage") != STAGE or r.get("iteration", 0) <= it)
        self.sink(Message(f"resumed the distillation from {path} at iteration {it}"))
        return it, ckpt.optimizer

    def _pseudo_labelled_target(self) -> CachedImages:
        """Target-train images with the latest complete round's training maps.

        A project without a round (no curriculum stage) gets round 1 labelled by the teacher
        now, so that the pseudo-label term (the only target signal of --no-distill) exists.
        """
        project, target = self.project, self.domains.target
        r = self.dist.agree(project.latest_round)  # rank 0 decides for all
        if r is None:
            r = 1
            portion = round_portion(project, r)
            self.sink(Message(f"no pseudo-label round yet: the teacher labels {len(target)} target "
                              f"images as round {r} (portion {portion:g})"))
            info = label_round(project, r, portion, self.teacher.model, self.device, dist=self.dist)
            self.sink(RoundReady(r, str(project.round_dir(r)), info["portion"],
                                 {k: info[k] for k in ("portion", "kept_fraction")}))
        labels = RoundLabels(project, r)  # read per batch from the round's files, not held
        labels.check(target.stems)
        return target.with_labels(labels)

    # ------------------------------------------------------------------------ training
    def _train(self, target: CachedImages, first: int, saved_optimizer: dict | None) -> bool:
        cfg, total = self.cfg, self.total
        self.sink(StageStarted(STAGE))
        lr = cfg.lr_of(STAGE)
        trainable = StudentLosses(self.student, self.adapters, cfg.distill, self.teacher.points)
        self.optimizer = build_sgd(trainable, cfg.optim, lr, head=self.student.classifier)
        if first > 0 and saved_optimizer is not None:
            self.optimizer.load_state_dict(saved_optimizer)
        self.trained = self.dist.wrap(trainable, find_unused=not trainable.uses_every_parameter())
        strip = (PreviewStrip.choose(self.domains, self.device)
                 if cfg.preview_every and self.dist.is_main else None)
        eta = EtaEstimator()
        eta.start(total, first)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        it = first
        while it < total:
            # Rank 0's stop (or any rank's Ctrl+C) stops every rank at this same iteration.
            if self.dist.any(self.control.checkpoint(on_resume=eta.mark_resumed)):
                self._save(it)
                self.sink(Message(f"stopped at distill iteration {it}; checkpoint saved"))
                return False
            set_lr(self.optimizer, cfg.optim, lr, it, total)
            values = self._step(target, it)
            it += 1
            for k, v in values.items():
                sums[k] += v
            count += 1
            self.sink(Losses(STAGE, it, values))
            eta.update(it)
            self.sink(eta.progress(STAGE))
            if (it % LOG_EVERY == 0 or it == total) and self.dist.is_main:
                self.project.append_metrics({"kind": "losses", "stage": STAGE, "iteration": it,
                                             "round": None, "time_s": self._elapsed(),
                                             **{k: v / count for k, v in sums.items()}})
                sums.clear()
                count = 0
            if strip is not None and it % cfg.preview_every == 0:
                strip.emit(self.sink, STAGE, it, self.student)
            if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < total:
                self._save(it)
        self._finish()
        self.sink(StageFinished(STAGE))
        return True

    def _batches(self, target: CachedImages, it: int):
        """The batch of iteration `it`: a function of (seed, it), so a resumed run repeats it."""
        if self.batches is None:
            self.batches = TrainingBatches(self.domains.source, self.domains.target, self.cfg.data,
                                           self.cfg.seed + SEED_OFFSET, self.device,
                                           rank=self.dist.rank, world_size=self.dist.world_size)
        return tuple(self.batches.get(STAGE, it, self.total, target))

    def _step(self, target: CachedImages, it: int) -> dict[str, float]:
        """One optimiser step; the loss parts (and 'total') averaged over the ranks."""
        xs, ys, xt, yt = self._batches(target, it)
        xs, xt = self.precision.inputs(xs), self.precision.inputs(xt)
        self.trained.train()
        teacher: tuple = ()
        with self.precision.autocast_context(self.device):
            if self.cfg.distill.from_teacher:
                with torch.no_grad():  # the frozen teacher: outside the trained module
                    t = self.teacher.model(xt)
                teacher = (t["out"], t["features"])
            losses = self.trained(xt, yt, xs, ys, *teacher)
        values = optimise(losses, self.dist, self.optimizer, self.scaler, "distill", it, "distill.lr")
        return values

    # ---------------------------------------------------------------------- saving, eval
    def _save(self, it: int) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.project.checkpoint_path(RESUME), config=self.cfg,
                        models={"student": self.student, "adapters": self.adapters},
                        stage=STAGE, iteration=it, optimizer=self.optimizer,
                        rng=capture_rng(self.np_rng), extra={"elapsed_s": self._elapsed()})

    def _finish(self) -> None:
        self._save(self.total)
        if self.dist.is_main:
            save_checkpoint(self.project.checkpoint_path(FINAL), config=self.cfg,
                            models={"student": self.student}, stage=STAGE, iteration=self.total)
        self.sink(Message(f"student written to {self.project.checkpoint_path(FINAL)}"))
        if not self.domains.val_labelled:
            self.sink(Message("the target has no labelled val split: the student is not evaluated"))
            return
        scores = evaluate_sharded(self.student, self.domains.val, self.dist, desc="evaluate student",
                                  size=self.cfg.data.target_size)
        record = scores.to_json()
        if self.dist.is_main:
            self.project.append_metrics({"kind": "eval", "stage": STAGE, "model": "student",
                                         "iteration": self.total, "round": None,
                                         "time_s": self._elapsed(), "miou": record["miou"],
                                         "per_class_iou": record["per_class_iou"],
                                         "pixel_acc": record["pixel_acc"]})
        self.sink(EvaluationResult("student", record))

    def _elapsed(self) -> float:
        return round(self.elapsed_before + time.monotonic() - self.started, 2)
