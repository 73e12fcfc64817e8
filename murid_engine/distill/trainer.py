"""Information Distillation (DESIGN.md §2): the single-branch student, trained against the teacher.

The job reads checkpoints/teacher.pt (the adapted teacher with its source bank) and the latest
complete pseudo-label round, and trains a DeepLabV2 of `config.student_model` on target crops:
KL to the teacher's predictions, hints at the MR points, and cross-entropy on the source labels
and on the round's confident pseudo-labels (see `losses`). With `distill.from_teacher` false
(the --no-distill ablation) only the two cross-entropies remain and the teacher is not run.

This job builds the student, finds the teacher and the round, and hands the distillation stage
(distill/stage.py) to the one training loop (training/runner.py), which emits the events, obeys
a Control between iterations and makes the job resumable: checkpoints/latest_student.pt holds
the student, its adapters, the optimiser, the iteration, the job's clock and every RNG state.

Under torchrun (murid_engine.distributed) the student and its adapters train in
DistributedDataParallel through `StudentLosses`, and only rank 0 writes into the project.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from murid_engine.allocator import keep_freed_memory
from murid_engine.checkpoint import restore_rng
from murid_engine.devices import Precision
from murid_engine.distributed import DistContext
from murid_engine.errors import UserError
from murid_engine.jobs import Control, EventSink, ImageProgress, Message, NullSink, RoundReady
from murid_engine.models.pretrained import load_pretrained
from murid_engine.project import Project
from murid_engine.training.domains import Domains
from murid_engine.training.domain_images import DomainImages
from murid_engine.training.image_cache import project_cache_dir
from murid_engine.training.loader import RoundLabels, TrainingBatches
from murid_engine.training.previews import PreviewStrip
from murid_engine.curriculum.round_summary import ROUND_FILE
from murid_engine.training.round_labels import label_round, round_portion
from murid_engine.training.runner import JobContext, StageRunner

from .stage import FINAL, RESUME, DistillStage, StudentLosses, StudentParts
from .student import FeatureAdapters, LoadedTeacher, build_student, load_teacher

STAGE = DistillStage.name
SEED_OFFSET = 104729  # the student draws other crops than the teacher did with the same seed
__all__ = ["StudentTrainer", "StudentLosses", "STAGE", "RESUME", "FINAL", "SEED_OFFSET"]


class StudentTrainer:
    def __init__(self, project: Project, sink: EventSink | None = None,
                 control: Control | None = None, domains: Domains | None = None,
                 dist: DistContext | None = None):
        keep_freed_memory()  # per-iteration buffers reuse the heap (allocator.py)
        self.project = project
        self.cfg = project.config
        dist = (dist or DistContext()).on_device(self.cfg.device)
        seed = self.cfg.seed + SEED_OFFSET
        np_rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)  # augmentation draws (distill.augment)
        dist.reseed_rank(seed, np_rng, self.gen)
        self.job = JobContext(project, self.cfg, sink or NullSink(), control or Control(), dist, np_rng)
        self.dist, self.sink = dist, self.job.sink  # the job's, for short
        self.device = dist.device
        self.precision = Precision.choose(self.device.type, self.cfg.amp)
        self.domains = domains
        self.teacher: LoadedTeacher | None = None
        self.student: nn.Module | None = None
        self.adapters: FeatureAdapters | None = None
        self.batches: TrainingBatches | None = None

    @staticmethod
    def has_resume_point(project: Project) -> bool:
        return (project.checkpoint_path(RESUME).is_file()
                or project.checkpoint_path(f"{RESUME}.prev").is_file())

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
        if resume and self.dist.agree(lambda: self.has_resume_point(self.project)):
            first, saved_optimizer = self._restore()
        else:
            if self.dist.is_main:
                resume_path.unlink(missing_ok=True)
                self.project.checkpoint_path(f"{RESUME}.prev").unlink(missing_ok=True)
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
                lambda: Domains.load(self.cfg, project_cache_dir(self.project.root), self.sink))
        target = self._pseudo_labelled_target(fresh=first == 0)
        self.batches = TrainingBatches(self.domains.source, self.domains.target, self.cfg.data,
                                       self.cfg.seed + SEED_OFFSET, self.device,
                                       rank=self.dist.rank, world_size=self.dist.world_size)
        if self.cfg.preview_every and self.dist.is_main:
            self.job.strip = PreviewStrip.choose(self.domains, self.device)
        parts = StudentParts(self.student, self.adapters, self.teacher, self.domains, target,
                             self.batches, self.gen)
        return StageRunner(self.job).run(DistillStage(self.job, parts), first, saved_optimizer)

    def _load_teacher(self) -> LoadedTeacher:
        path = self.project.checkpoint_path("teacher")
        if not path.is_file():
            raise UserError(f"{self.project.root} has no trained teacher yet ({path.name}); "
                            "run `murid train` (its adapt or curriculum stage) first")
        return load_teacher(path, self.device)

    def _restore(self) -> tuple[int, dict | None]:
        if self.dist.is_main:
            self.project.clean_temp_files()
        # Every rank reads the same file: latest_student.pt, else its kept predecessor.
        point = self.dist.main_first(lambda: self.project.resume_checkpoint(RESUME))
        if point.note:
            self.sink(Message(point.note))
        path, ckpt = point.path, point.checkpoint
        self.student.load_state_dict(ckpt.model_state("student"))
        self.adapters.load_state_dict(ckpt.model_state("adapters"))
        if ckpt.rng is not None:
            restore_rng(ckpt.rng, self.job.np_rng)
        if "torch_generator" in ckpt.extra:  # absent in resume points written before augment
            self.gen.set_state(ckpt.extra["torch_generator"])
        self.job.clock.resume_from(float(ckpt.extra.get("elapsed_s", 0.0)))
        it = ckpt.iteration
        # The checkpoint holds rank 0's random streams; the other ranks draw their own.
        self.dist.reseed_rank(self.cfg.seed + SEED_OFFSET, self.job.np_rng, self.gen, salt=1 + it)
        if self.dist.is_main:
            self.project.rewind_metrics(lambda r: r.get("stage") != STAGE or r.get("iteration", 0) <= it)
        self.sink(Message(f"resumed the distillation from {path} at iteration {it}"))
        return it, ckpt.optimizer

    def _pseudo_labelled_target(self, fresh: bool) -> DomainImages:
        """Target-train images with the latest complete round's training maps.

        A project without a round (no curriculum stage) gets round 1 labelled by the teacher
        now, so that the pseudo-label term (the only target signal of --no-distill) exists.
        With `distill.relabel` and the user's edits in the project, a fresh distillation first
        has the final teacher label one round more, unless the latest round is newer than
        teacher.pt (made by it already): the last curriculum round's labels came from the teacher
        before it trained on them — and on the user's corrections of that round. Without edits
        the pass is skipped: it measured level there (docs/BENCHMARKS.md, issue 15) and costs a
        pseudo-label pass.
        """
        project, target = self.project, self.domains.target
        r = self.dist.agree(project.latest_round)  # rank 0 decides for all
        relabel = self.dist.agree(lambda: fresh and self.cfg.distill.relabel and r is not None
                                  and bool(project.edited_stems())
                                  and not self._made_by_final_teacher(r))
        if r is None or relabel:
            r = 1 if r is None else r + 1
            portion = round_portion(project, r)
            self.sink(Message(f"the teacher labels {len(target)} target images as round {r} "
                              f"(portion {portion:g}) for the student" if relabel else
                              f"no pseudo-label round yet: the teacher labels {len(target)} target "
                              f"images as round {r} (portion {portion:g})"))
            summary = label_round(project, r, portion, self.teacher.model, self.device, dist=self.dist,
                                  on_image=ImageProgress(self.sink, f"pseudo-label round {r}"))
            self.sink(RoundReady.of(summary, project.round_dir(r)))
        labels = RoundLabels(project, r)  # read per batch from the round's files, not held
        labels.check(target.stems)
        return target.with_labels(labels)

    def _made_by_final_teacher(self, r: int) -> bool:
        info = self.project.round_dir(r) / ROUND_FILE
        teacher = self.project.checkpoint_path("teacher")
        return info.is_file() and teacher.is_file() and info.stat().st_mtime > teacher.stat().st_mtime
