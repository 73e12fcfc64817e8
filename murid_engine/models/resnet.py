"""ResNet backbones in torchvision's layout and key names, so a local ImageNet file loads as is.

Stages 3 and 4 are dilated instead of strided (DeepLab-v2): output stride 8. The `tiny`
backbone has the same structure with narrow stages, sized for the CPU demo.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

BACKBONES: dict[str, Callable[[], "ResNetBackbone"]] = {}


def register_backbone(fn: Callable[[], "ResNetBackbone"]) -> Callable[[], "ResNetBackbone"]:
    BACKBONES[fn.__name__] = fn
    return fn


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """Stem + four stages; `stage_channels[i]` is the width after stage i+1."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem_width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = stem_width
        # (stride, dilation) per stage: output stride 8 with dilated stages 3 and 4.
        plan = ((1, 1), (2, 1), (1, 2), (1, 4))
        stages = []
        for n, width, (stride, dilation) in zip(layers, widths, plan):
            stages.append(self._make_stage(block, width, n, stride, dilation))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.stage_channels = tuple(w * block.expansion for w in widths)

    def _make_stage(self, block, planes: int, n: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        # The first block of a dilated stage uses half the dilation, as torchvision does.
        blocks = [block(self._cin, planes, stride, max(1, dilation // 2), downsample)]
        self._cin = planes * block.expansion
        blocks += [block(self._cin, planes, 1, dilation) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    @property
    def stages(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


@register_backbone
def resnet101() -> ResNetBackbone:
    return ResNetBackbone(Bottleneck, (3, 4, 23, 3))


@register_backbone
def resnet50() -> ResNetBackbone:
    return ResNetBackbone(Bottleneck, (3, 4, 6, 3))


@register_backbone
def resnet18() -> ResNetBackbone:
    return ResNetBackbone(BasicBlock, (2, 2, 2, 2))


@register_backbone
def tiny() -> ResNetBackbone:
    """About 1M parameters with its classifier: trains in minutes on two CPU cores."""
    return ResNetBackbone(BasicBlock, (1, 1, 2, 1), widths=(32, 48, 96, 128), stem_width=32)
