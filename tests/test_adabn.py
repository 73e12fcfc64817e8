"""AdaBN: re-estimating BatchNorm statistics changes only the BatchNorm buffers, and sets them to
the statistics of the given images."""

from __future__ import annotations

import copy

import torch

from murid_engine.models import DeepLabV2, ModelConfig
from murid_engine.training.adabn import batchnorm_layers, reestimate_batchnorm


def _model() -> DeepLabV2:
    torch.manual_seed(0)
    model = DeepLabV2(ModelConfig(backbone="tiny", aspp_rates=(1, 2)))
    model.train()
    return model


def test_only_batchnorm_buffers_change_and_mode_is_restored() -> None:
    model = _model()
    before = copy.deepcopy(model.state_dict())
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=g) for _ in range(5)]
    assert reestimate_batchnorm(model, images, batch_size=2) == 5
    after = model.state_dict()
    bn_names = {f"{name}.{b}" for name, m in model.named_modules()
                if m in batchnorm_layers(model) for b in ("running_mean", "running_var", "num_batches_tracked")}
    assert bn_names, "the model has BatchNorm layers"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= bn_names
    assert {k for k in bn_names if k.endswith("running_mean")} <= changed
    assert model.training  # mode restored
    assert all(m.momentum == 0.1 for m in batchnorm_layers(model))  # momentum restored
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_statistics_are_those_of_the_images() -> None:
    model = _model()
    first = batchnorm_layers(model)[0]
    seen = []
    hook = first.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    g = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(4)]
    reestimate_batchnorm(model, images, batch_size=4)  # one batch: exact batch statistics
    hook.remove()
    x = seen[0]
    assert len(seen) == 1 and x.shape[0] == 4
    assert torch.allclose(first.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(first.running_var, x.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6)
    # Other images, other statistics: the old ones are replaced, not blended in.
    images2 = [im.flip(-1) // 2 for im in images]
    reestimate_batchnorm(model, images2, batch_size=4)
    assert not torch.allclose(first.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-3)
