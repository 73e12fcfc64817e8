"""The optimiser of every stage: SGD with momentum and DeepLab's polynomial learning-rate decay."""

from __future__ import annotations

from torch import nn, optim

from murid_engine.run_config import OptimConfig


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    return base * (1.0 - it / max(1, total)) ** power


def build_sgd(model: nn.Module, cfg: OptimConfig, base_lr: float,
              head: nn.Module | None = None) -> optim.SGD:
    """SGD over `model`; the parameters of `head` (the classifier) get `head_lr_mult`× the rate."""
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": body, "lr_mult": 1.0}]
    if head_ids:
        groups.append({"params": [p for p in head.parameters() if p.requires_grad],
                       "lr_mult": cfg.head_lr_mult})
    return optim.SGD(groups, lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(opt: optim.Optimizer, cfg: OptimConfig, base_lr: float, it: int, total: int) -> float:
    lr = poly_lr(base_lr, it, total, cfg.poly_power)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr
