"""The student's network, its feature adapters, and the frozen teacher it learns from.

The student is a plain DeepLabV2 (no MR, no source partner). Its features at the MR points
are the outputs of its own backbone stages, computed here by running the stages one by one
(`student_forward`), so the network's modules need no hooks and its checkpoint stays a plain
DeepLabV2 state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from murid_engine.checkpoint import load_checkpoint
from murid_engine.model_store import teacher_from_checkpoint
from murid_engine.models.banked import BankedTeacher
from murid_engine.models.deeplab import DeepLabV2, ModelConfig


def student_forward(net: DeepLabV2, x: torch.Tensor, points: tuple[int, ...]
                    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(logits at input size, {point: output of backbone stage `point`}); the same logits as
    ``net(x)['out']``, with the shallow features that ``net.forward`` does not return."""
    backbone = net.backbone
    h = backbone.stem(net.normalize(x))
    features: dict[int, torch.Tensor] = {}
    for point, stage in enumerate(backbone.stages, start=1):
        h = stage(h)
        if point in points:
            features[point] = h
    logits = F.interpolate(net.classifier(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits, features


class FeatureAdapters(nn.Module):
    """One 1×1 convolution per MR point: student stage channels -> teacher stage channels.

    The regressor of FitNets (Romero et al., ICLR 2015): it lets a narrower (or wider)
    student mimic the teacher's features; it is only used in training and not deployed.
    """

    def __init__(self, student_channels: tuple[int, ...], teacher_channels: tuple[int, ...],
                 points: tuple[int, ...]):
        super().__init__()
        self.points = tuple(sorted(points))
        self.maps = nn.ModuleDict({
            str(p): nn.Conv2d(student_channels[p - 1], teacher_channels[p - 1], 1)
            for p in self.points
        })

    def forward(self, point: int, x: torch.Tensor) -> torch.Tensor:
        return self.maps[str(point)](x)


@dataclass
class StudentInit:
    net: DeepLabV2
    copied: int  # tensors copied from the teacher's network
    total: int  # tensors of the student

    @property
    def note(self) -> str:
        if self.copied == 0:
            return "student initialised at random (its backbone differs from the teacher's)"
        return f"student initialised from the teacher's network ({self.copied} of {self.total} tensors)"


def build_student(cfg: ModelConfig, teacher_state: dict[str, torch.Tensor] | None,
                  teacher_cfg: ModelConfig | None) -> StudentInit:
    """A DeepLabV2 of `cfg`; when its backbone is the teacher's, every tensor of the teacher's
    ``net.*`` weights that fits (name and shape) is copied, BN statistics included (they are
    the target domain's: DESIGN.md §2)."""
    net = DeepLabV2(cfg)
    own = net.state_dict()
    copied = 0
    if teacher_state is not None and teacher_cfg is not None and teacher_cfg.backbone == cfg.backbone:
        fitting = {k[len("net."):]: v for k, v in teacher_state.items()
                   if k.startswith("net.") and k[len("net."):] in own
                   and own[k[len("net."):]].shape == v.shape}
        own.update({k: v.clone() for k, v in fitting.items()})
        net.load_state_dict(own)
        copied = len(fitting)
    return StudentInit(net, copied, len(own))


@dataclass
class LoadedTeacher:
    model: BankedTeacher  # forward(x) -> {'out', 'features': point -> refined features}
    state: dict[str, torch.Tensor]  # the MuridTeacher's weights (for the student's init)
    cfg: ModelConfig
    path: Path

    @property
    def points(self) -> tuple[int, ...]:
        return tuple(self.model.teacher.points)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.model.teacher.net.backbone.stage_channels)


def load_teacher(path: Path, device: torch.device) -> LoadedTeacher:
    """The trained teacher of checkpoints/teacher.pt with its source bank, frozen, in eval mode.

    Kept as a MuridTeacher (also without MR) because distillation needs its features at the
    MR points, which `forward_target` returns.
    """
    ckpt = load_checkpoint(path)
    model = teacher_from_checkpoint(ckpt).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedTeacher(model, ckpt.model_state("teacher"), ckpt.config.model, path)
