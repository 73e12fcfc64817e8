"""Plain supervised training on labelled images: the source-only and oracle reference runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE
from murid_engine.progress import progress

from .optim import poly_lr
from .batches import AugmentConfig, DecodedImages, augmented_batch


@dataclass
class SupervisedConfig:
    iterations: int = 1000
    batch_size: int = 8
    lr: float = 0.01  # SGD with momentum, polynomial decay (power 0.9) as in DeepLab
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def train_supervised(model: torch.nn.Module, data: DecodedImages, cfg: SupervisedConfig,
                     desc: str = "train") -> list[float]:
    """Train `model` in place on `data`'s labels; returns the loss of every iteration."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for it in progress(range(cfg.iterations), desc, cfg.iterations):
        for group in opt.param_groups:
            group["lr"] = poly_lr(cfg.lr, it, cfg.iterations)
        idx = rng.integers(0, len(data), cfg.batch_size)
        x, y = augmented_batch(data, idx, cfg.augment, rng)
        loss = F.cross_entropy(model(x)["out"], y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
