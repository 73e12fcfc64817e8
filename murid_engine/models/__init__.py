"""Segmentation networks: model code only, no training logic."""

from .deeplab import DeepLabV2, ModelConfig
from .resnet import BACKBONES, ResNetBackbone, register_backbone

__all__ = ["BACKBONES", "DeepLabV2", "ModelConfig", "ResNetBackbone", "register_backbone"]
