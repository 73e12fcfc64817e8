"""An exponential moving average of a model's weights (Mean Teacher, Tarvainen & Valpola 2017).

DACS labels the target with such a copy: its predictions change slowly, so the pseudo-labels do
not chase the student's own mistakes. BatchNorm buffers are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema = d·ema + (1-d)·model, with d ramped up as in DACS: min(decay, 1 - 1/(step + 1))."""
    d = min(decay, 1.0 - 1.0 / (step + 1))
    for e, m in zip(ema.parameters(), model.parameters()):
        e.mul_(d).add_(m.detach(), alpha=1.0 - d)
    for e, m in zip(ema.buffers(), model.buffers()):
        e.copy_(m)
