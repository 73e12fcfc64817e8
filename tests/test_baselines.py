"""The plain baselines' mechanics: statistics mixing, DACS's ClassMix and pseudo-label weights,
the oracle as the warm-up stage on target labels."""

from __future__ import annotations

import torch

from murid_engine.baselines.config import MixStyleConfig
from murid_engine.baselines.mixing import channel_stats, draw_weights, mix_statistics, mixed_forward
from murid_engine.baselines.stages import dacs_labels
from murid_engine.config import apply_overrides, load_preset
from murid_engine.labels import IGNORE
from murid_engine.models.deeplab import DeepLabV2, ModelConfig
from murid_engine.training.augment import classmix_masks, mix
from murid_engine.training.reference import reference_config


def test_mixing_with_weight_zero_is_the_identity():
    torch.manual_seed(0)
    source, target = torch.randn(3, 8, 5, 7), torch.randn(3, 8, 5, 7) * 4 + 2
    out = mix_statistics(source, target, torch.zeros(3))
    assert torch.allclose(out, source, atol=1e-5)


def test_mixing_with_weight_one_gives_the_target_statistics():
    torch.manual_seed(1)
    source, target = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6) * 3 - 1
    out = mix_statistics(source, target, torch.ones(2))
    (mu_o, sig_o), (mu_t, sig_t) = channel_stats(out), channel_stats(target)
    assert torch.allclose(mu_o, mu_t, atol=1e-4) and torch.allclose(sig_o, sig_t, atol=1e-3)
    half = mix_statistics(source, target, torch.full((2,), 0.5))
    mu_s, _ = channel_stats(source)
    assert torch.allclose(channel_stats(half)[0], (mu_s + mu_t) / 2, atol=1e-4)


def test_mixing_weights_follow_the_probability_and_distribution():
    gen = torch.Generator().manual_seed(0)
    never = draw_weights(100, MixStyleConfig(probability=0.0), gen)
    assert torch.equal(never, torch.zeros(100))
    uniform = draw_weights(2000, MixStyleConfig(probability=1.0, weight="uniform"), gen)
    assert 0.45 < uniform.mean().item() < 0.55 and uniform.min() >= 0 and uniform.max() <= 1
    beta = draw_weights(2000, MixStyleConfig(probability=1.0, weight="beta", alpha=0.1), gen)
    extreme = ((beta < 0.05) | (beta > 0.95)).float().mean().item()
    assert extreme > 0.6  # Beta(0.1, 0.1) puts most of its mass near 0 and 1, unlike U(0, 1)


def test_mixed_forward_without_mixing_is_the_plain_network_on_both_crops():
    torch.manual_seed(0)
    net = DeepLabV2(ModelConfig(backbone="tiny", aspp_rates=(1, 2))).eval()
    xs, xt = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    s, t = mixed_forward(net, xs, xt, MixStyleConfig(probability=0.0), torch.Generator().manual_seed(0))
    both = net(torch.cat([xs, xt]))["out"]
    assert torch.allclose(s, both[:2], atol=1e-5) and torch.allclose(t, both[2:], atol=1e-5)


def test_classmix_pastes_exactly_the_chosen_source_classes():
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([[[0, 0, 1, 1, 2, 2, 5, IGNORE]]])  # 4 classes present
    masks = classmix_masks(labels, gen)
    chosen = labels[masks].unique()
    assert len(chosen) == 2 and IGNORE not in chosen.tolist()  # half of the classes, rounded up
    assert torch.equal(masks, torch.isin(labels, chosen))  # every pixel of a chosen class, no other
    source, target = torch.rand(1, 3, 1, 8), torch.rand(1, 3, 1, 8)
    mixed = mix(masks, source, target)
    assert torch.equal(mixed[:, :, masks[0]], source[:, :, masks[0]])
    assert torch.equal(mixed[:, :, ~masks[0]], target[:, :, ~masks[0]])


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return {"out": self.logits}


def test_dacs_pseudo_labels_are_weighted_by_the_confident_share():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = 10.0  # one pixel of four is confident (> 0.968)
    labels, weights = dacs_labels(_Fixed(logits), torch.zeros(1, 3, 2, 2), 0.968)
    assert labels[0, 0, 0] == 1
    assert torch.allclose(weights, torch.full((1, 2, 2), 0.25))


def test_the_oracle_is_the_warm_up_stage_on_the_target_labels():
    cfg = apply_overrides(load_preset("smoke"), ["data.source=synthcity:/data/a",
                                                 "data.target=cityscapes:/data/b"])
    oracle = reference_config(cfg, "oracle", iterations=7)
    assert oracle.stages == ("warmup",) and oracle.warmup.iterations == 7
    assert (oracle.data.source, oracle.data.source_split) == ("cityscapes:/data/b", "train")
    source_only = reference_config(cfg, "source_only")
    assert source_only.data.source == "synthcity:/data/a" and source_only.optim == oracle.optim
