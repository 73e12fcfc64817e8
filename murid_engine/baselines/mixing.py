"""Cross-domain statistics mixing in shallow layers (MixStyle, Zhou et al., ICLR 2021, with the
target's statistics as the style, as in domain-adaptive uses of AdaIN).

At each mixing point, a source image's features are normalised with their own per-channel mean
and standard deviation and re-styled with a mix of its own and a target image's statistics:

    f' = σ_mix · (f − μ_s) / σ_s + μ_mix,   μ_mix = (1 − w)·μ_s + w·μ_t,   σ_mix likewise,

with the target share `w` drawn per image (Beta(α, α) as MixStyle does, or uniform) and applied
with a probability. `w = 0` is the identity. The statistics are detached, as in MixStyle, so the
style is a perturbation and not a path for gradients.

The network is one shared-BatchNorm DeepLabV2: the step's source and target crops go through it
as one batch, so every BatchNorm normalises with the statistics of both (as DACS and DAFormer
train), and the running statistics are those of the mixture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from murid_engine.models.deeplab import DeepLabV2

from .config import MixStyleConfig

EPS = 1e-6


def channel_stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation (B×C×1×1 each), detached."""
    mu = f.mean(dim=(2, 3), keepdim=True)
    sigma = (f.var(dim=(2, 3), keepdim=True) + EPS).sqrt()
    return mu.detach(), sigma.detach()


def mix_statistics(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`source` features re-styled with the target share `weight` (B, one per source image) of the
    statistics of `target` (paired by batch index)."""
    mu_s, sig_s = channel_stats(source)
    mu_t, sig_t = channel_stats(target)
    w = weight.to(source.dtype).view(-1, 1, 1, 1)
    mu = (1 - w) * mu_s + w * mu_t
    sig = (1 - w) * sig_s + w * sig_t
    return (source - mu_s) / sig_s * sig + mu


def draw_weights(n: int, cfg: MixStyleConfig, gen: torch.Generator) -> torch.Tensor:
    """Target shares of `n` source images; 0 for an image the probability leaves alone."""
    if cfg.weight == "uniform":
        w = torch.rand(n, generator=gen)
    else:  # Beta(α, α) from two Gamma draws, on the CPU generator (reproducible)
        a = torch._standard_gamma(torch.full((n,), cfg.alpha), generator=gen)
        b = torch._standard_gamma(torch.full((n,), cfg.alpha), generator=gen)
        w = a / (a + b).clamp_min(1e-12)
    apply = torch.rand(n, generator=gen) < cfg.probability
    return torch.where(apply, w, torch.zeros_like(w))


def mixed_forward(net: DeepLabV2, source: torch.Tensor, target: torch.Tensor, cfg: MixStyleConfig,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(source logits, target logits) of one shared-BatchNorm pass over both crops, the source
    half re-styled with the target's statistics after each of `cfg.points`."""
    n = source.shape[0]
    backbone = net.backbone
    h = backbone.stem(net.normalize(torch.cat([source, target])))
    for point, stage in enumerate(backbone.stages, start=1):
        h = stage(h)
        if point in cfg.points:
            w = draw_weights(n, cfg, gen).to(h.device)
            pairs = target.shape[0]
            partner = h[n:][torch.arange(n, device=h.device) % pairs]
            h = torch.cat([mix_statistics(h[:n], partner, w), h[n:]])
    logits = F.interpolate(net.classifier(h), size=source.shape[-2:], mode="bilinear", align_corners=False)
    return logits[:n], logits[n:]
