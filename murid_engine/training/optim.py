"""The optimiser of every stage: SGD with momentum and DeepLab's polynomial learning-rate decay."""

from __future__ import annotations

from torch import nn, optim

from murid_engine.run_config import OptimConfig


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    return base * (1.0 - it / max(1, total)) ** power


def build_sgd(model: nn.Module, cfg: OptimConfig, base_lr: float,
              head: nn.Module | None = None, mr: nn.Module | None = None) -> optim.SGD:
    """SGD over `model`: the classifier `head` gets `head_lr_mult`× the rate, the MR modules `mr`
    get `mr_lr_mult`×, and the MR gates no weight decay.

    The gates start at zero (the module starts as the identity) and their gradient is small, so
    with the body's rate and weight decay they stay near zero and the attention never takes
    part; zero-initialised scales are kept out of weight decay for the same reason in ReZero
    (Bachlechner et al. 2020) and LayerScale (Touvron et al., CaiT 2021).
    """
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    mr_named = list(mr.named_parameters()) if mr is not None else []
    gates = [p for n, p in mr_named if n.rsplit(".", 1)[-1].startswith("gamma")]
    mr_rest = [p for n, p in mr_named if not n.rsplit(".", 1)[-1].startswith("gamma")]
    special = head_ids | {id(p) for _, p in mr_named}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in special],
               "lr_mult": 1.0}]
    if head_ids:
        groups.append({"params": [p for p in head.parameters() if p.requires_grad],
                       "lr_mult": cfg.head_lr_mult})
    if mr_rest:
        groups.append({"params": mr_rest, "lr_mult": cfg.mr_lr_mult})
    if gates:
        groups.append({"params": gates, "lr_mult": cfg.mr_lr_mult, "weight_decay": 0.0})
    return optim.SGD(groups, lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(opt: optim.Optimizer, cfg: OptimConfig, base_lr: float, it: int, total: int) -> float:
    lr = poly_lr(base_lr, it, total, cfg.poly_power)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr
