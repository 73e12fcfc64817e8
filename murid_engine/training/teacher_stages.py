"""The MURID teacher's stages, each what is its own: warm-up → adapt → curriculum.

warmup      the plain network on source labels (no target, no MR); writes the reference network
            (checkpoints/source_only.pt — or oracle.pt when the "source" is the target's own
            labelled split: the oracle is the same stage on other labels, training/reference.py);
adapt       the teacher on a source and a target batch together (MR active); writes teacher.pt;
curriculum  R rounds of pseudo-label → train with the EMA teacher (steps.py); a round begins by
            labelling the target (or reading back the round a resumed run made), ends with a
            score; writes teacher.pt from the EMA teacher.

The loop itself is training/runner.py; the parts the stages share (the teacher, its EMA copy,
the batches, the domains) are a `TeacherParts`.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import torch
from torch import nn

from murid_engine.checkpoint import save_checkpoint
from murid_engine.jobs import ImageProgress, Message, RoundReady
from murid_engine.models.banked import BankedTeacher, bank_classes_state, bank_to_state
from murid_engine.models.teacher import MuridTeacher, SourceBank
from murid_engine.records import RoundRecord
from murid_engine.run_config import RunConfig

from .content_partners import class_histograms
from .domains import Domains, bank_indices
from .ema import make_ema, update_ema
from .domain_images import DomainImages
from .loader import Batch, RoundLabels, TrainingBatches
from .optim import build_sgd
from .round_labels import label_round, round_portion
from .runner import JobContext, SavedState, Stage, register_stage
from .steps import adapt_step, curriculum_step, warmup_step
from .teacher_ddp import wrap_teacher

RESUME = "latest"  # checkpoints/latest.pt: where a stopped teacher job resumes


@dataclass
class TeacherParts:
    """What the teacher's stages share and its checkpoint holds."""
    model: MuridTeacher
    gen: torch.Generator  # ClassMix and photometric draws
    domains: Domains
    batches: TrainingBatches
    reference_name: str = "source_only"  # what the warm-up's network is called: or 'oracle'
    ema: MuridTeacher | None = None
    trained: nn.Module | None = field(default=None)  # what the steps call: the model, or its DDP view

    def bank(self, model: MuridTeacher, batch_size: int, indices: list[int]) -> SourceBank:
        """The source bank of the source images at `indices` (float, [0, 1])."""
        images = [self.domains.source.images[i].float().div(255.0) for i in indices]
        batches, group = [], []
        for img in images:  # same-size images share a batch (the source stream's BN statistics)
            if group and (img.shape != group[0].shape or len(group) == batch_size):
                batches.append(torch.stack(group))
                group = []
            group.append(img)
        batches.append(torch.stack(group))
        model.eval()
        return model.build_source_bank(batches, max_items=len(images))

    def banked(self, model: MuridTeacher, cfg: RunConfig) -> BankedTeacher:
        """`model` (the teacher or its EMA copy) with the run's source bank, as it labels and
        scores; with `mr.bank_select`, the class histograms of the bank's images too."""
        source = self.domains.source
        idx = bank_indices(source, cfg.mr.bank_size, cfg.seed)
        bank = self.bank(model, cfg.data.batch_size, idx)
        histograms = None
        if cfg.mr.bank_select:
            histograms = torch.from_numpy(class_histograms((source.label_map(i) for i in idx),
                                                           cfg.model.num_classes))
        return BankedTeacher(model, bank, histograms, cfg.mr.bank_select)


class TeacherStage(Stage):
    """The parts every teacher stage has alike: the optimiser over the teacher, DDP, saving."""
    uses_target = True

    def __init__(self, job: JobContext, parts: TeacherParts):
        super().__init__(job)
        self.parts = parts

    @classmethod
    def length(cls, cfg) -> int:
        return getattr(cfg, cls.name).iterations

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        model = self.parts.model
        self.optimizer = build_sgd(model, self.job.cfg.optim, self.base_lr, head=model.net.classifier,
                                   mr=model.mr)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.parts.trained = model
        if self.job.dist.distributed:
            gc.collect()  # the previous stage's DDP must be gone: its hooks sit on the same parameters
        self.parts.trained = wrap_teacher(self.job.dist, model, self.name)

    def close(self) -> None:
        self.parts.trained = self.parts.model

    def target_images(self, it: int) -> DomainImages | None:
        return self.parts.domains.target if self.uses_target else None

    def batch(self, it: int) -> Batch:
        """The batch of iteration `it`: a function of (seed, stage, it), so a resumed run repeats it."""
        b = self.parts.batches.get(self.name, it, self.batch_stop(it), self.target_images(it))
        p = self.job.precision
        return Batch(p.inputs(b.source), b.source_labels, p.inputs(b.target), b.target_labels)

    def batch_stop(self, it: int) -> int:
        return self.total

    def saved_state(self) -> SavedState:
        models: dict[str, nn.Module] = {"teacher": self.parts.model}  # unwrapped: one-process format
        if self.parts.ema is not None:
            models["ema"] = self.parts.ema
        return SavedState(RESUME, models, {"torch_generator": self.parts.gen.get_state()})

    def banked(self, model: MuridTeacher) -> BankedTeacher:
        """`model` with the run's source bank: what labels, scores and previews."""
        return self.parts.banked(model, self.job.cfg)

    def save_teacher(self, final: MuridTeacher) -> BankedTeacher:
        """checkpoints/teacher.pt (the teacher with its source bank: what evaluate, predict and
        distil use), and the same teacher banked for scoring."""
        teacher = self.banked(final)
        if self.job.dist.is_main:
            save_checkpoint(self.job.project.checkpoint_path("teacher"), config=self.job.cfg,
                            models={"teacher": final, "bank": bank_to_state(teacher.bank),
                                    **bank_classes_state(teacher)},
                            stage=self.name, iteration=self.total)
        return teacher

    def evaluate(self, name: str, model: nn.Module, iteration: int, round_no: int | None = None) -> None:
        self.job.evaluate(self.name, name, model, self.parts.domains.val, iteration, round_no)


@register_stage("warmup")
class WarmupStage(TeacherStage):
    uses_target = False

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        self.parts.model.train()
        return warmup_step(self.parts.trained, batch, self.job.cfg)

    def preview_model(self) -> nn.Module:
        return self.parts.model.net

    def finish(self) -> None:
        name, net = self.parts.reference_name, self.parts.model.net
        if self.job.dist.is_main:
            save_checkpoint(self.job.project.checkpoint_path(name), config=self.job.cfg,
                            models={"net": net}, stage=self.name, iteration=self.total)
        self.evaluate(name, net, self.total)


@register_stage("adapt")
class AdaptStage(TeacherStage):
    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        self.parts.model.train()
        return adapt_step(self.parts.trained, batch, self.job.cfg)

    def preview_model(self) -> nn.Module:
        model = self.parts.model
        return model.net if not model.points else self.banked(model)

    def finish(self) -> None:
        self.evaluate("teacher", self.save_teacher(self.parts.model), self.total)


@register_stage("curriculum")
class CurriculumStage(TeacherStage):
    """R rounds of (pseudo-label the target with the EMA teacher → train on those labels)."""

    def __init__(self, job: JobContext, parts: TeacherParts):
        super().__init__(job, parts)
        c = job.cfg.curriculum
        self.per_round = c.iterations_per_round
        self.rounds = c.rounds
        self.current: int | None = None
        self.target: DomainImages | None = None

    @classmethod
    def length(cls, cfg) -> int:
        return cfg.curriculum.rounds * cfg.curriculum.iterations_per_round

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.curriculum.enabled  # false: the --no-curriculum ablation

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        if self.parts.ema is None:
            self.parts.ema = make_ema(self.parts.model)
        super().begin(first, optimizer_state)

    def round_of(self, it: int) -> int:
        return it // self.per_round + 1

    def before_iteration(self, it: int) -> None:
        r = self.round_of(it)
        if r != self.current:
            self.current = r
            self.target = self.prepare_round(r)

    def target_images(self, it: int) -> DomainImages | None:
        return self.target

    def batch_stop(self, it: int) -> int:
        # The next round has other labels: no batch is made ahead for it.
        return min(self.total, (it // self.per_round + 1) * self.per_round)

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        self.parts.model.train()
        return curriculum_step(self.parts.trained, self.parts.ema, batch, self.job.cfg, self.parts.gen)

    def after_step(self, it: int) -> None:
        update_ema(self.parts.ema, self.parts.model, self.job.cfg.curriculum.ema_decay, it)

    def after_iteration(self, done: int) -> None:
        if done % self.per_round == 0:  # a score per round shows the curriculum's progress
            self.evaluate("teacher", self.banked(self.parts.ema), done, self.current)

    def preview_model(self) -> nn.Module:
        ema = self.parts.ema
        return ema.net if not ema.points else self.banked(ema)

    def finish(self) -> None:
        self.evaluate("teacher", self.save_teacher(self.parts.ema), self.total, self.rounds)

    def prepare_round(self, r: int) -> DomainImages:
        """Round r's training labels: labelled now, or read back when a resumed run made them."""
        job, parts, project = self.job, self.parts, self.job.project
        if job.dist.agree(lambda: r not in project.rounds()):  # rank 0 decides for all
            portion = round_portion(project, r)
            job.sink(Message(f"curriculum round {r}: pseudo-labelling "
                             f"{len(parts.domains.target)} target images (portion {portion:g})"))
            # Progress per image; a stop (after any image alone, between chunks under torchrun,
            # where the ranks must agree) leaves no half-written round, and the runner saves the
            # stage where this round was to begin.
            alone = None if job.dist.distributed else job.control
            summary = label_round(project, r, portion, self.banked(parts.ema), job.device,
                                  other=parts.model.net, dist=job.dist,
                                  on_image=ImageProgress(job.sink, f"pseudo-label round {r}", alone),
                                  stop=job.control.checkpoint)
            job.record(RoundRecord(r, (r - 1) * self.per_round, job.clock.elapsed(), summary.portion,
                                   summary.kept_fraction, summary.thresholds))
            job.sink(RoundReady.of(summary, project.round_dir(r)))
        labels = RoundLabels(project, r)  # read per batch from the round's files, not held
        labels.check(parts.domains.target.stems)
        return parts.domains.target.with_labels(labels)
