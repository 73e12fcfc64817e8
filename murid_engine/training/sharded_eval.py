"""Evaluation over the training processes: each rank scores its shard, the confusion matrices add up."""

from __future__ import annotations

import numpy as np
from torch import nn

from murid_engine.data.base import Dataset
from murid_engine.distributed import DistContext


def evaluate_sharded(model: nn.Module, dataset: Dataset, ctx: DistContext, desc: str,
                     size: tuple[int, int] | None):
    """Scores of `model` on `dataset`, each rank evaluating its shard (confusion matrices summed).

    Every rank must call it with the same model (weights equal by DDP, buffers by
    `sync_buffers`); the result is the same on every rank.
    """
    from murid_engine.inference import evaluate_model
    from murid_engine.metrics import SegmentationScores

    ctx.sync_buffers(model)
    scores = evaluate_model(model, ctx.shard(dataset), desc=desc, size=size, device=ctx.device)
    if not ctx.distributed:
        return scores
    counts = np.append(scores.confusion.ravel(), scores.n_images).astype(np.int64)
    counts = ctx.sum_array(counts)
    return SegmentationScores.from_matrix(counts[:-1].reshape(scores.confusion.shape), int(counts[-1]))
