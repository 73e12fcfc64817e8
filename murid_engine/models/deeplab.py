"""DeepLab-v2: a dilated ResNet and an ASPP classifier whose branches are summed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from murid_engine.labels import MAX_CLASSES, NUM_CLASSES

from .resnet import BACKBONES, ResNetBackbone

# ImageNet statistics: the network normalises its own [0, 1] RGB input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "tiny"
    num_classes: int = NUM_CLASSES
    aspp_rates: tuple[int, ...] = (6, 12, 18, 24)
    pretrained: str = ""  # a local torchvision-style ImageNet file; empty = random init

    def validate(self) -> "ModelConfig":
        from murid_engine.errors import UserError

        if self.backbone not in BACKBONES:
            raise UserError(f"unknown backbone '{self.backbone}' (choose from {', '.join(BACKBONES)})")
        if not self.aspp_rates or any(r < 1 for r in self.aspp_rates):
            raise UserError(f"aspp_rates must be positive integers, not {self.aspp_rates}")
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise UserError(f"num_classes must be between 1 and {MAX_CLASSES} (a round's training maps "
                            f"keep the user's class c as 128 + c in one byte), not {self.num_classes}")
        return self


class ASPP(nn.Module):
    """Parallel dilated 3x3 convolutions, outputs summed (DeepLab-v2's classifier)."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(cin, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    """forward(x in [0, 1]) -> {'out': logits at input size, 'features': deepest features}."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone: ResNetBackbone = BACKBONES[cfg.backbone]()
        self.classifier = ASPP(self.backbone.stage_channels[-1], cfg.num_classes, cfg.aspp_rates)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(self.normalize(x))
        logits = self.classifier(features)
        out = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return {"out": out, "features": features}
