"""The baselines as stages of the one training loop (training/runner.py).

mixstyle  a plain shared-BatchNorm DeepLabV2 trained on source labels, the source features
          re-styled with target statistics in shallow layers (mixing.py); no self-training.
dacs      DACS (Tranheden et al., WACV 2021) from the mixstyle network: an EMA teacher labels
          the target crop, half of a source image's classes are pasted onto it (ClassMix), the
          mixed image is colour-jittered and blurred, and its pseudo-labels are weighted by the
          share of pixels above DACS's confidence threshold; source cross-entropy beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from murid_engine.checkpoint import save_checkpoint
from murid_engine.models.deeplab import DeepLabV2
from murid_engine.training.augment import classmix, photometric
from murid_engine.training.domains import Domains
from murid_engine.training.ema import make_ema, update_ema
from murid_engine.training.loader import Batch, TrainingBatches
from murid_engine.training.losses import segmentation_ce, weighted_ce
from murid_engine.training.optim import build_sgd
from murid_engine.training.runner import JobContext, SavedState, Stage, register_stage

from .config import BaselineConfig
from .mixing import mixed_forward

RESUME = "latest_baseline"


@dataclass
class BaselineParts:
    net: DeepLabV2
    gen: torch.Generator
    domains: Domains
    batches: TrainingBatches
    settings: BaselineConfig
    ema: DeepLabV2 | None = None


class BaselineStage(Stage):
    def __init__(self, job: JobContext, parts: BaselineParts):
        super().__init__(job)
        self.parts = parts
        self.trained: nn.Module = parts.net

    @property
    def base_lr(self) -> float:
        return self.job.cfg.optim.lr

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        net = self.parts.net
        self.optimizer = build_sgd(net, self.job.cfg.optim, self.base_lr, head=net.classifier)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.trained = self.job.dist.wrap(net)

    def batch(self, it: int) -> Batch:
        b = self.parts.batches.get(self.name, it, self.total, self.parts.domains.target)
        p = self.job.precision
        return Batch(p.inputs(b.source), b.source_labels, p.inputs(b.target), b.target_labels)

    def saved_state(self) -> SavedState:
        models: dict[str, nn.Module] = {"net": self.parts.net}
        if self.parts.ema is not None:
            models["ema"] = self.parts.ema
        return SavedState(RESUME, models, {"torch_generator": self.parts.gen.get_state()})

    def final_model(self) -> nn.Module:
        return self.parts.net

    def preview_model(self) -> nn.Module:
        return self.final_model()

    def finish(self) -> None:
        model = self.final_model()
        if self.job.dist.is_main:
            save_checkpoint(self.job.project.checkpoint_path(self.name), config=self.job.cfg,
                            models={"net": model}, stage=self.name, iteration=self.total)
        self.job.evaluate(self.name, self.name, model, self.parts.domains.val, self.total)


@register_stage("mixstyle")
class MixStyleStage(BaselineStage):
    @property
    def total(self) -> int:  # the baselines' budgets are their own settings, not the run config's
        return self.parts.settings.mixstyle.iterations

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        self.trained.train()
        source_logits, _ = mixed_forward(self.parts.net, batch.source, batch.target,
                                         self.parts.settings.mixstyle, self.parts.gen)
        return {"source_ce": segmentation_ce(source_logits, batch.source_labels)}


@torch.no_grad()
def dacs_labels(ema: nn.Module, target: torch.Tensor, confidence: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-labels, weights) of a target crop: the EMA teacher's argmax, every pixel weighted
    by the share of pixels whose confidence exceeds `confidence` (DACS)."""
    ema.eval()
    probs = torch.softmax(ema(target)["out"].float(), dim=1)
    conf, labels = probs.max(dim=1)
    share = (conf > confidence).float().mean(dim=(1, 2), keepdim=True)
    return labels, share.expand_as(conf).contiguous()


@register_stage("dacs")
class DacsStage(BaselineStage):
    @property
    def total(self) -> int:
        return self.parts.settings.dacs.iterations

    def begin(self, first: int, optimizer_state: dict | None) -> None:
        if self.parts.ema is None:
            self.parts.ema = make_ema(self.parts.net)
        super().begin(first, optimizer_state)

    def step(self, batch: Batch, it: int) -> dict[str, torch.Tensor]:
        c, gen = self.parts.settings.dacs, self.parts.gen
        labels, weights = dacs_labels(self.parts.ema, batch.target, c.confidence)
        source, target = batch.source, batch.target
        if c.classmix:
            target, labels, weights = classmix(source, batch.source_labels, target, labels, weights, gen)
        if c.photometric:
            target = photometric(target, gen)
        self.trained.train()
        return {"source_ce": segmentation_ce(self.trained(source)["out"], batch.source_labels),
                "target_ce": weighted_ce(self.trained(target)["out"], labels, weights)}

    def after_step(self, it: int) -> None:
        update_ema(self.parts.ema, self.parts.net, self.parts.settings.dacs.ema_decay, it)

    def final_model(self) -> nn.Module:
        return self.parts.ema if self.parts.ema is not None else self.parts.net
