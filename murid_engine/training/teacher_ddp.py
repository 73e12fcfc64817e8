"""The teacher under DistributedDataParallel: which module a teacher stage wraps, and how the
training steps' two kinds of forward (paired and single-stream) both go through the wrapper."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from murid_engine.distributed import DistContext


class RoutedTeacher(nn.Module):
    """The teacher as the training steps call it — ``model(source, target)`` and
    ``model.forward_single(x)`` — with every forward made through the DDP wrapper.

    DDP averages gradients only for a forward made through ``DDP.__call__``; calling the
    wrapped module's methods directly would train each rank on its own gradients.
    """

    def __init__(self, pair: nn.Module | None = None, single: nn.Module | None = None):
        super().__init__()
        self.pair = pair
        self.single = single

    def forward(self, source: torch.Tensor, target: torch.Tensor, **options: Any) -> dict[str, Any]:
        if self.pair is None:
            raise RuntimeError("this stage trains the plain network: use forward_single")
        return self.pair(source, target, **options)

    def forward_single(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.single is None:
            raise RuntimeError("this stage trains the teacher on source and target together")
        return self.single(x)


def wrap_teacher(ctx: DistContext, teacher: nn.Module, stage: str) -> nn.Module:
    """What a teacher stage's steps train: the teacher itself on one process, else DDP.

    Warm-up trains the plain network (`teacher.net`) and only it is wrapped, so the MR modules,
    unused there, are not part of the reduction; adapt and curriculum wrap the whole teacher,
    whose MR modules all take part unless MR is off (--no-mr), in which case DDP is told to
    find the unused parameters (find_unused_parameters, at the cost of a graph traversal).
    """
    if not ctx.distributed:
        return teacher
    if stage == "warmup":
        return RoutedTeacher(single=ctx.wrap(teacher.net))
    return RoutedTeacher(pair=ctx.wrap(teacher, find_unused=not teacher.mr_enabled))
