"""The typed configuration of one MURID run, saved inside every checkpoint (as in nanoGPT).

Read it with `murid_engine.config.load_preset` / `from_dict`; every field is documented where it
is declared, and `RunConfig.validate()` checks ranges with one-sentence errors. Stage lengths are
optimiser iterations; a batch is `data.batch_size` source images plus as many target images.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

from murid_engine.errors import UserError
from murid_engine.models.deeplab import ModelConfig
from murid_engine.models.mutual_refinement import MRConfig
from murid_engine.regions.scoring import RegionConfig
from murid_engine.training.batches import AugmentConfig

STAGES = ("warmup", "adapt", "curriculum", "distill")
CACHE_MODES = ("auto", "disk", "off")  # data.cache (training/image_stores.py)
KL_PIXELS = ("all", "kept", "weighted")  # distill.kl_pixels (distill/losses.py)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _positive(value: float) -> bool:
    return value > 0 and math.isfinite(value)  # `>` is also False for NaN


def _non_negative(value: float) -> bool:
    return value >= 0 and math.isfinite(value)


@dataclass
class DataConfig:
    source: str = ""  # labelled source domain 'KIND:PATH' (e.g. gta5:/data/gta5); "" = set by the project/CLI
    source_split: str = ""  # split of the source; "" = 'source' for synthcity, the kind's only split otherwise
    target: str = ""  # unlabelled target domain 'KIND:PATH' (e.g. cityscapes:/data/cityscapes); "" = set later
    target_split: str = "train"  # target split trained on (its labels, if any, are never used for training)
    val_split: str = "val"  # target split that previews and evaluation use
    source_size: tuple[int, int] | None = None  # (w, h) every source image is resized to on load; null = native
    target_size: tuple[int, int] | None = None  # (w, h) every target image is resized to on load; null = native
    crop: tuple[int, int] = (256, 128)  # (w, h) of a training crop, after the random rescale
    scale: tuple[float, float] = (0.75, 1.25)  # range of the random rescale before cropping
    flip: bool = True  # random horizontal flips
    batch_size: int = 8  # images per domain per iteration (source and target each)
    workers: int = 0  # DataLoader worker processes preparing batches; 0 = in the training process
    # Where decoded images are kept: 'disk' (decoded once into <project>/cache), 'off' (decoded
    # from the files at each read), 'auto' (disk when it fits with a margin; says which and why)
    cache: str = "auto"

    def resolved_source_split(self) -> str | None:
        """The split to open the source with: SynthCity keeps its labelled domain in 'source'."""
        if self.source_split:
            return self.source_split
        return "source" if self.source.partition(":")[0] == "synthcity" else None

    def augment(self) -> AugmentConfig:
        return AugmentConfig(crop=self.crop, scale=self.scale, flip=self.flip)

    def validate(self) -> None:
        from murid_engine.data import parse_spec  # the readers are only needed to check specs

        for name in ("source", "target"):
            if getattr(self, name):
                parse_spec(getattr(self, name))
        _check(bool(self.target_split and self.val_split), "data.target_split and data.val_split must not be empty")
        for name in ("source_size", "target_size", "crop"):
            size = getattr(self, name)
            _check(size is None or min(size) > 0, f"data.{name} must be positive (width, height), not {size}")
        lo, hi = self.scale
        _check(_positive(lo) and lo <= hi and math.isfinite(hi),
               f"data.scale must be (low, high) with 0 < low <= high, not {self.scale}")
        _check(self.batch_size >= 1, f"data.batch_size must be 1 or more, not {self.batch_size}")
        _check(self.workers >= 0, f"data.workers must be 0 or more, not {self.workers}")
        _check(self.cache in CACHE_MODES,
               f"data.cache must be one of {', '.join(CACHE_MODES)}, not '{self.cache}'")


@dataclass
class StageConfig:
    iterations: int = 1000  # optimiser steps of this stage
    lr: float | None = None  # base learning rate of this stage; null = optim.lr
    entropy_weight: float = 0.0  # weight of the target entropy loss (adapt; warmup sees no target)

    def validate(self, name: str) -> None:
        _check(self.iterations >= 1, f"{name}.iterations must be 1 or more, not {self.iterations}")
        _check(self.lr is None or _positive(self.lr), f"{name}.lr must be positive or null, not {self.lr}")
        _check(_non_negative(self.entropy_weight),
               f"{name}.entropy_weight must be 0 or more, not {self.entropy_weight}")


@dataclass
class CurriculumConfig:
    enabled: bool = True  # self-training rounds; false = the --no-curriculum ablation (stage skipped)
    portions: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)  # per round, fraction of each class's pixels kept (CBST)
    iterations_per_round: int = 2000  # optimiser steps of each round after its pseudo-labels are made
    lr: float | None = None  # base learning rate of the rounds; null = optim.lr
    threshold_cap: float = 0.95  # a class threshold never exceeds this, so very confident pixels are kept
    ema_decay: float = 0.999  # decay of the EMA teacher that labels the target (Mean Teacher / DACS)
    classmix: bool = True  # paste half of a source image's classes onto target images (DACS)
    photometric: bool = True  # colour jitter and blur on training images (DACS)
    confidence_weighted: bool = True  # weight the pseudo-label loss by the confident fraction (DACS)
    # Loss weight of the pixels the user labelled (edits, region actions) against a kept
    # pseudo-label's 1: a review corrects a few percent of the pixels (round_labels.HUMAN). The
    # cpu-demo and paper presets say 10, with distill.edit_weight 10 and distill.relabel: +1.3 /
    # +3.5 mIoU for a 2 % ranked review on SynthCity standard / hard (docs/BENCHMARKS.md, issue 15)
    edit_weight: float = 1.0

    @property
    def rounds(self) -> int:
        return len(self.portions)

    def validate(self) -> None:
        p = self.portions
        _check(len(p) > 0 and all(0 < x <= 1 for x in p) and list(p) == sorted(p),
               f"curriculum.portions must be non-decreasing fractions in (0, 1], not {list(p)}")
        _check(self.iterations_per_round >= 1,
               f"curriculum.iterations_per_round must be 1 or more, not {self.iterations_per_round}")
        _check(self.lr is None or _positive(self.lr), f"curriculum.lr must be positive or null, not {self.lr}")
        _check(0 < self.threshold_cap <= 1, f"curriculum.threshold_cap must be in (0, 1], not {self.threshold_cap}")
        _check(0 <= self.ema_decay < 1, f"curriculum.ema_decay must be in [0, 1), not {self.ema_decay}")
        _check(_positive(self.edit_weight), f"curriculum.edit_weight must be positive, not {self.edit_weight}")


@dataclass
class DistillConfig:
    enabled: bool = True  # train and deploy a single-branch student; false = the teacher is the result
    # Learn from the teacher (KL + features) besides the pseudo-labels; false = pseudo-labels and
    # source labels only (--no-distill). The cpu-demo and paper presets say false: that student
    # measured better on SynthCity standard and as good on hard (docs/BENCHMARKS.md, issue 14)
    from_teacher: bool = True
    iterations: int = 2000  # optimiser steps of the student
    lr: float | None = None  # base learning rate of the student; null = optim.lr
    temperature: float = 2.0  # softmax temperature of the KL term (scaled by T^2, as in Hinton et al.)
    kl_weight: float = 1.0  # weight of KL(teacher || student) on target images
    feature_weight: float = 0.1  # weight of feature mimicking at the MR points through a 1x1 adapter
    source_ce_weight: float = 1.0  # weight of cross-entropy on source labels
    pseudo_ce_weight: float = 1.0  # weight of cross-entropy on the confident target pseudo-labels
    edit_weight: float = 1.0  # in that cross-entropy, the user's pixels against a pseudo-label's 1
    # When the user has edited labels, a fresh distillation first has the final teacher label
    # one more round (its labels, the user's edits on top); false = the last curriculum round's
    # labels, made before its training. The cpu-demo and paper presets say true (see
    # curriculum.edit_weight)
    relabel: bool = False
    # Where the KL counts: 'all' pixels, only those the round 'kept' (above their class
    # threshold, or edited), or every pixel 'weighted' by the teacher's confidence there
    kl_pixels: str = "all"
    # ClassMix + photometric on the student's target crops (DACS); the teacher labels the clean
    # crop, so its KL and hints are a consistency target (FixMatch / Mean Teacher)
    augment: bool = False

    def validate(self) -> None:
        _check(self.iterations >= 1, f"distill.iterations must be 1 or more, not {self.iterations}")
        _check(self.kl_pixels in KL_PIXELS,
               f"distill.kl_pixels must be one of {', '.join(KL_PIXELS)}, not '{self.kl_pixels}'")
        _check(self.lr is None or _positive(self.lr), f"distill.lr must be positive or null, not {self.lr}")
        _check(_positive(self.temperature), f"distill.temperature must be positive, not {self.temperature}")
        _check(_positive(self.edit_weight), f"distill.edit_weight must be positive, not {self.edit_weight}")
        for name in ("kl_weight", "feature_weight", "source_ce_weight", "pseudo_ce_weight"):
            value = getattr(self, name)
            _check(_non_negative(value), f"distill.{name} must be 0 or more, not {value}")
        if self.from_teacher:
            _check(self.kl_weight + self.feature_weight > 0,
                   "distill.kl_weight or distill.feature_weight must be positive when distill.from_teacher is true")
        else:
            _check(self.pseudo_ce_weight > 0,
                   "distill.pseudo_ce_weight must be positive when distill.from_teacher is false")


@dataclass
class OptimConfig:
    lr: float = 0.01  # base learning rate of SGD with momentum (a stage's lr overrides it)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 weight decay
    poly_power: float = 0.9  # lr = base * (1 - it / stage_iterations) ** poly_power (DeepLab)
    head_lr_mult: float = 1.0  # lr multiplier of the ASPP classifier (10 in DeepLab-v2 UDA papers)
    mr_lr_mult: float = 10.0  # lr multiplier of the MR modules (new, zero-gated layers); gates get no weight decay

    def validate(self) -> None:
        _check(_positive(self.lr), f"optim.lr must be positive, not {self.lr}")
        _check(0 <= self.momentum < 1, f"optim.momentum must be in [0, 1), not {self.momentum}")
        _check(_non_negative(self.weight_decay), f"optim.weight_decay must be 0 or more, not {self.weight_decay}")
        _check(_non_negative(self.poly_power), f"optim.poly_power must be 0 or more, not {self.poly_power}")
        _check(_positive(self.head_lr_mult), f"optim.head_lr_mult must be positive, not {self.head_lr_mult}")
        _check(_positive(self.mr_lr_mult), f"optim.mr_lr_mult must be positive, not {self.mr_lr_mult}")


@dataclass
class RunConfig:
    description: str = ""  # one line shown in the preset list of the app and `murid train --help`
    model: ModelConfig = field(default_factory=ModelConfig)  # the MURID teacher's network
    student_model: ModelConfig = field(default_factory=ModelConfig)  # the distilled student's network
    data: DataConfig = field(default_factory=DataConfig)  # datasets, crops and batches
    mr: MRConfig = field(default_factory=MRConfig)  # the Mutual Refinement module
    warmup: StageConfig = field(default_factory=lambda: StageConfig(iterations=1000))  # source-only training
    # adapt: MR on source + target batches, source cross-entropy plus target entropy
    adapt: StageConfig = field(default_factory=lambda: StageConfig(iterations=1000, entropy_weight=0.01))
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # pseudo-label rounds
    distill: DistillConfig = field(default_factory=DistillConfig)  # the student
    regions: RegionConfig = field(default_factory=RegionConfig)  # superpixels of each round's review queue
    optim: OptimConfig = field(default_factory=OptimConfig)  # the optimiser shared by all stages
    stages: tuple[str, ...] = STAGES  # the stages this run executes, in this order
    seed: int = 0  # seed of every random generator (torch, numpy, sampling)
    device: str = "auto"  # 'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    # Iterations between checkpoints; 0 = at the end of each stage and on a stop (Ctrl+C, SIGTERM,
    # SIGHUP, the app's stop) only. A stop saves one whatever this is.
    checkpoint_every: int = 1000
    preview_every: int = 100  # iterations between live target previews; 0 = none

    def validate(self) -> "RunConfig":
        """Check every range; returns self so that `load(...).validate()` chains."""
        for name in ("model", "student_model"):
            try:
                getattr(self, name).validate()
            except UserError as e:
                raise UserError(f"{name}: {e}") from None
        _check(self.model.num_classes == self.student_model.num_classes,
               f"student_model.num_classes ({self.student_model.num_classes}) must equal "
               f"model.num_classes ({self.model.num_classes})")
        self.data.validate()
        self.mr.validate()
        self.warmup.validate("warmup")
        _check(self.warmup.entropy_weight == 0, "warmup.entropy_weight must be 0: warmup sees no target images")
        self.adapt.validate("adapt")
        self.curriculum.validate()
        self.distill.validate()
        self.regions.validate()
        self.optim.validate()
        st = list(self.stages)
        _check(len(st) > 0 and st == [s for s in STAGES if s in st] and len(set(st)) == len(st),
               f"stages must be some of {', '.join(STAGES)} in that order, not {', '.join(st) or 'none'}")
        _check(self.seed >= 0, f"seed must be 0 or more, not {self.seed}")
        _check(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
               f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not '{self.device}'")
        _check(self.checkpoint_every >= 0, f"checkpoint_every must be 0 or more, not {self.checkpoint_every}")
        _check(self.preview_every >= 0, f"preview_every must be 0 or more, not {self.preview_every}")
        return self

    def lr_of(self, stage: str) -> float:
        """The base learning rate of a stage: its own `lr`, else optim.lr."""
        _check(stage in STAGES, f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
        own = getattr(self, stage).lr
        return self.optim.lr if own is None else own

    def ablate(self, no_mr: bool = False, no_curriculum: bool = False, no_distill: bool = False) -> "RunConfig":
        """A copy with the ablation switches applied; the stages stay, so results stay comparable.

        --no-distill keeps the student (the deployed model) but trains it on pseudo-labels only.
        """
        cfg = copy.deepcopy(self)
        if no_mr:
            cfg.mr.enabled = False
        if no_curriculum:
            cfg.curriculum.enabled = False
        if no_distill:
            cfg.distill.from_teacher = False
        return cfg
