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
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from murid_engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from murid_engine.errors import UserError
from murid_engine.inference import evaluate_model
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
from murid_engine.training.batches import DecodedImages, augmented_batch
from murid_engine.training.domains import Domains
from murid_engine.training.optim import build_sgd, set_lr
from murid_engine.training.previews import PreviewStrip
from murid_engine.training.round_labels import NO_LOSS, label_round, round_portion, training_maps
from murid_engine.training.trainer import LOG_EVERY, resolve_device

from .losses import StudentOutputs, distill_losses
from .student import FeatureAdapters, LoadedTeacher, build_student, load_teacher, student_forward

STAGE = "distill"
RESUME = "latest_student"  # checkpoints/latest_student.pt: where a stopped distillation resumes
FINAL = "student"  # checkpoints/student.pt: what evaluate, predict and export use
SEED_OFFSET = 104729  # the student draws other crops than the teacher did with the same seed


class StudentTrainer:
    def __init__(self, project: Project, sink: EventSink | None = None,
                 control: Control | None = None, domains: Domains | None = None):
        self.project = project
        self.cfg = project.config
        self.sink = sink or NullSink()
        self.control = control or Control()
        self.device = resolve_device(self.cfg.device)
        self.domains = domains
        seed = self.cfg.seed + SEED_OFFSET
        self.np_rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.teacher: LoadedTeacher | None = None
        self.student: nn.Module | None = None
        self.adapters: FeatureAdapters | None = None
        self.optimizer: torch.optim.Optimizer | None = None
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
        teacher_path = self.project.checkpoint_path("teacher")
        if not teacher_path.is_file():
            raise UserError(f"{self.project.root} has no trained teacher yet ({teacher_path.name}); "
                            "run `murid train` (its adapt or curriculum stage) first")
        self.teacher = load_teacher(teacher_path, self.device)
        init = build_student(self.cfg.student_model, self.teacher.state, self.teacher.cfg)
        self.student = init.net.to(self.device)
        self.adapters = FeatureAdapters(self.student.backbone.stage_channels, self.teacher.channels,
                                        self.teacher.points).to(self.device)
        first, saved_optimizer = 0, None
        resume_path = self.project.checkpoint_path(RESUME)
        if resume and resume_path.is_file():
            first, saved_optimizer = self._restore(resume_path)
        else:
            resume_path.unlink(missing_ok=True)
            # A new distillation replaces the records of an earlier one.
            self.project.rewind_metrics(lambda r: r.get("stage") != STAGE)
            self.sink(Message(init.note))
            if init.copied == 0 and self.cfg.student_model.pretrained:
                # A student of another backbone starts from the user's ImageNet file, if given.
                report = load_pretrained(self.student.backbone, self.cfg.student_model.pretrained)
                self.sink(Message(report.summary()))
        if first >= self.total and self.project.checkpoint_path(FINAL).is_file():
            self.sink(Message("the student is already distilled; nothing to resume"))
            return True
        if self.domains is None:
            self.domains = Domains.load(self.cfg)
        target = self._pseudo_labelled_target()
        return self._train(target, first, saved_optimizer)

    def _restore(self, path) -> tuple[int, dict | None]:
        self.project.clean_temp_files()
        ckpt = load_checkpoint(path)
        self.student.load_state_dict(ckpt.model_state("student"))
        self.adapters.load_state_dict(ckpt.model_state("adapters"))
        if ckpt.rng is not None:
            restore_rng(ckpt.rng, self.np_rng)
        self.elapsed_before = float(ckpt.extra.get("elapsed_s", 0.0))
        it = ckpt.iteration
        self.project.rewind_metrics(lambda r: r.get("stage") != STAGE or r.get("iteration", 0) <= it)
        self.sink(Message(f"resumed the distillation from {path} at iteration {it}"))
        return it, ckpt.optimizer

    def _pseudo_labelled_target(self) -> DecodedImages:
        """Target-train images with the latest complete round's training maps.

        A project without a round (no curriculum stage) gets round 1 labelled by the teacher
        now, so that the pseudo-label term (the only target signal of --no-distill) exists.
        """
        project, target = self.project, self.domains.target
        r = project.latest_round()
        if r is None:
            r = 1
            portion = round_portion(project, r)
            self.sink(Message(f"no pseudo-label round yet: the teacher labels {len(target)} target "
                              f"images as round {r} (portion {portion:g})"))
            info = label_round(project, r, portion, self.teacher.model, target, self.device)
            self.sink(RoundReady(r, str(project.round_dir(r)), info["portion"],
                                 {k: info[k] for k in ("portion", "kept_fraction")}))
        return target.with_labels(training_maps(project, r, target.stems))

    # ------------------------------------------------------------------------ training
    def _train(self, target: DecodedImages, first: int, saved_optimizer: dict | None) -> bool:
        cfg, total = self.cfg, self.total
        self.sink(StageStarted(STAGE))
        lr = cfg.lr_of(STAGE)
        trainable = nn.ModuleDict({"student": self.student, "adapters": self.adapters})
        self.optimizer = build_sgd(trainable, cfg.optim, lr, head=self.student.classifier)
        if first > 0 and saved_optimizer is not None:
            self.optimizer.load_state_dict(saved_optimizer)
        strip = PreviewStrip.choose(self.domains, self.device) if cfg.preview_every else None
        eta = EtaEstimator()
        eta.start(total, first)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        it = first
        while it < total:
            if self.control.checkpoint(on_resume=eta.mark_resumed):
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
            if it % LOG_EVERY == 0 or it == total:
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

    def _batches(self, target: DecodedImages):
        bs, aug = self.cfg.data.batch_size, self.cfg.data.augment()
        src = self.domains.source
        xs, ys = augmented_batch(src, self.np_rng.integers(0, len(src), bs), aug, self.np_rng)
        xt, yt = augmented_batch(target, self.np_rng.integers(0, len(target), bs), aug,
                                 self.np_rng, label_fill=NO_LOSS)
        d = self.device
        return xs.to(d), ys.to(d), xt.to(d), yt.to(d)

    def _step(self, target: DecodedImages, it: int) -> dict[str, float]:
        cfg = self.cfg.distill
        xs, ys, xt, yt = self._batches(target)
        self.student.train()
        self.adapters.train()
        use_amp = self.cfg.amp and self.device.type == "cuda"
        dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        points = self.teacher.points
        with torch.autocast(self.device.type, dtype=dtype, enabled=use_amp):
            out = StudentOutputs(*student_forward(self.student, xt, points), pseudo_labels=yt)
            if cfg.source_ce_weight > 0:
                # The source crop is normalised with its own batch statistics and leaves the
                # running statistics alone: they stay the target's (DESIGN.md §2, BatchNorm).
                with own_batch_stats(self.student, update_running=False):
                    out.source_logits = self.student(xs)["out"]
                out.source_labels = ys
            if cfg.from_teacher:
                with torch.no_grad():
                    t = self.teacher.model(xt)
                out.teacher_logits, out.teacher_features = t["out"], t["features"]
            losses = distill_losses(out, cfg, self.adapters)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise UserError(f"the distill loss became {float(total)} at iteration {it + 1}; "
                            "lower the learning rate (--set distill.lr=...)")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["total"] = sum(values.values())
        return values

    # ---------------------------------------------------------------------- saving, eval
    def _save(self, it: int) -> None:
        save_checkpoint(self.project.checkpoint_path(RESUME), config=self.cfg,
                        models={"student": self.student, "adapters": self.adapters},
                        stage=STAGE, iteration=it, optimizer=self.optimizer,
                        rng=capture_rng(self.np_rng), extra={"elapsed_s": self._elapsed()})

    def _finish(self) -> None:
        self._save(self.total)
        save_checkpoint(self.project.checkpoint_path(FINAL), config=self.cfg,
                        models={"student": self.student}, stage=STAGE, iteration=self.total)
        self.sink(Message(f"student written to {self.project.checkpoint_path(FINAL)}"))
        if not self.domains.val_labelled:
            self.sink(Message("the target has no labelled val split: the student is not evaluated"))
            return
        scores = evaluate_model(self.student, self.domains.val, desc="evaluate student",
                                size=self.cfg.data.target_size, device=self.device)
        record = scores.to_json()
        self.project.append_metrics({"kind": "eval", "stage": STAGE, "model": "student",
                                     "iteration": self.total, "round": None,
                                     "time_s": self._elapsed(), "miou": record["miou"], "per_class_iou": record["per_class_iou"],
                                     "pixel_acc": record["pixel_acc"]})
        self.sink(EvaluationResult("student", record))

    def _elapsed(self) -> float:
        return round(self.elapsed_before + time.monotonic() - self.started, 2)
