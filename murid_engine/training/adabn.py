"""AdaBN: adapt a network to a new domain by re-estimating its BatchNorm statistics there.

Li, Wang, Shi, Liu, Hou, "Revisiting Batch Normalization For Practical Domain Adaptation"
(ICLR workshop 2017, arXiv:1603.04779). No weight changes: each BatchNorm layer's running mean
and variance are replaced by the statistics of its inputs on target images, so the layer
normalises target features as it normalised source features in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, images: Sequence[torch.Tensor], batch_size: int = 8,
                         device: torch.device | str = "cpu") -> int:
    """Replace every BatchNorm layer's running statistics by their average over `images`
    (uint8 3×H×W tensors, as DecodedImages holds them); returns the number of images seen.
    Only the BatchNorm buffers change; the model's train/eval mode is restored."""
    if len(images) == 0:
        raise ValueError("AdaBN needs at least one target image")
    layers = batchnorm_layers(model)
    momenta = [m.momentum for m in layers]
    was_training = model.training
    model.eval()  # everything else (dropout, ...) in inference mode
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches, not an exponential one
        m.train()
    try:
        start = 0
        while start < len(images):
            # A batch of images of one size (stacking needs it); sizes rarely differ.
            shape = images[start].shape
            end = start + 1
            while end < len(images) and end - start < batch_size and images[end].shape == shape:
                end += 1
            x = torch.stack(list(images[start:end])).to(device).float().div_(255.0)
            model(x)
            start = end
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(images)
