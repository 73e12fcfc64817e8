"""The distillation stage: the student trained against the frozen teacher, through the one loop.

Each iteration runs the teacher (no gradient) on the clean target crop and `StudentLosses` — the
student's two passes and the adapters in one module, so one DDP forward covers every trained
parameter — and returns the loss parts of distill/losses.py. At the end the stage writes
checkpoints/student.pt ({'student': the network}, the config inside) and scores the student on
the target val split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from murid_engine.checkpoint import save_checkpoint
from murid_engine.jobs import Message
from murid_engine.models.teacher import own_batch_stats
from murid_engine.run_config import DistillConfig
from murid_engine.training.domains import Domains
from murid_engine.training.augment import classmix_masks, mix, photometric
from murid_engine.training.domain_images import DomainImages
from murid_engine.training.loader import Batch, TrainingBatches
from murid_engine.training.optim import build_sgd
from murid_engine.training.runner import JobContext, SavedState, Stage, register_stage

from .losses import StudentOutputs, distill_losses
from .student import FeatureAdapters, LoadedTeacher, student_forward

RESUME = "latest_student"  # checkpoints/latest_student.pt: where a stopped distillation resumes
FINAL = "student"  # checkpoints/student.pt: what evaluate, predict and export use


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
                teacher_features: dict[int, torch.Tensor] | None = None,
                pasted: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = StudentOutputs(*student_forward(self.student, xt, self.points), pseudo_labels=yt,
                             pasted=pasted)
        if self.cfg.source_ce_weight > 0:
            # The source crop is normalised with its own batch statistics and leaves the
            # running statistics alone: they stay the target's (DESIGN.md §2, BatchNorm).
            with own_batch_stats(self.student, update_running=False):
                out.source_logits = self.student(xs)["out"]
            out.source_labels = ys
        out.teacher_logits, out.teacher_features = teacher_logits, teacher_features
        return distill_losses(out, self.cfg, self.adapters)


@dataclass
class StudentParts:
    student: nn.Module
    adapters: FeatureAdapters
    teacher: LoadedTeacher
    domains: Domains
    target: DomainImages  # target-train images with the latest round's training maps
    batches: TrainingBatches
    gen: torch.Generator  # ClassMix and photometric draws (distill.augment)


@register_stage("distill")
class DistillStage(Stage):
    lr_setting = "distill.lr"

    def __init__(self, job: JobContext, parts: StudentParts):
        super().__init__(job)
        self.parts = parts
        self.trained: nn.Module | None = None  # StudentLosses, or its DDP wrapper

    @classmethod
    def length(cls, cfg) -> int:
        return cfg.distill.iterations

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        p, cfg = self.parts, self.job.cfg
        trainable = StudentLosses(p.student, p.adapters, cfg.distill, p.teacher.points)
        self.optimizer = build_sgd(trainable, cfg.optim, self.base_lr, head=p.student.classifier)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.trained = self.job.dist.wrap(trainable, find_unused=not trainable.uses_every_parameter())

    def batch(self, it: int) -> Batch:
        """The batch of iteration `it`: a function of (seed, it), so a resumed run repeats it."""
        b = self.parts.batches.get(self.name, it, self.total, self.parts.target)
        p = self.job.precision
        return Batch(p.inputs(b.source), b.source_labels, p.inputs(b.target), b.target_labels)

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        self.trained.train()
        teacher_logits = teacher_features = None
        if self.job.cfg.distill.from_teacher:
            with torch.no_grad():  # the frozen teacher, on the clean crop: outside the trained module
                t = self.parts.teacher.model(batch.target)
            teacher_logits, teacher_features = t["out"], t["features"]
        xt, yt, xs, pasted = batch.target, batch.target_labels, batch.source, None
        if self.job.cfg.distill.augment:
            gen = self.parts.gen
            pasted = classmix_masks(batch.source_labels, gen)
            xt = photometric(mix(pasted, xs, xt), gen)
            yt = mix(pasted, batch.source_labels, yt)
            xs = photometric(xs, gen)
        return self.trained(xt, yt, xs, batch.source_labels, teacher_logits, teacher_features, pasted)

    def preview_model(self) -> nn.Module:
        return self.parts.student

    def saved_state(self) -> SavedState:
        return SavedState(RESUME, {"student": self.parts.student, "adapters": self.parts.adapters},
                          {"torch_generator": self.parts.gen.get_state()})

    def finish(self) -> None:
        job = self.job
        if job.dist.is_main:
            save_checkpoint(job.project.checkpoint_path(FINAL), config=job.cfg,
                            models={"student": self.parts.student}, stage=self.name, iteration=self.total)
        job.sink(Message(f"student written to {job.project.checkpoint_path(FINAL)}"))
        if not self.parts.domains.val_labelled:
            job.sink(Message("the target has no labelled val split: the student is not evaluated"))
            return
        job.evaluate(self.name, "student", self.parts.student, self.parts.domains.val, self.total)
