"""Training-time image mixing and photometric augmentation, on batched tensors in [0, 1].

Both follow DACS (Tranheden et al., "DACS: Domain Adaptation via Cross-domain Mixed Sampling",
WACV 2021): ClassMix (Olsson et al., WACV 2021) pastes half of the classes of a source image
onto a target image, and the mixed image is colour-jittered and blurred. Everything is drawn
from a torch Generator so that a resumed run repeats the same augmentations; the generator is a
CPU one (a checkpoint stores its state), so its draws are moved to the batch's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE


def classmix_masks(source_labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """B×H×W bool masks: True where source pixel i belongs to a class chosen for pasting.

    Half of the classes present in each source label (rounded up) are chosen at random.
    """
    masks = torch.zeros_like(source_labels, dtype=torch.bool)
    for i, lab in enumerate(source_labels):
        classes = lab.unique()
        classes = classes[classes != IGNORE]
        if classes.numel() == 0:
            continue
        order = torch.randperm(classes.numel(), generator=gen).to(classes.device)
        chosen = classes[order[: (classes.numel() + 1) // 2]]
        masks[i] = torch.isin(lab, chosen)
    return masks


def mix(mask: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Source where mask, target elsewhere; images (B×3×H×W) and maps (B×H×W) alike."""
    m = mask[:, None] if source.dim() == 4 else mask
    return torch.where(m, source, target)


def classmix(source: torch.Tensor, source_labels: torch.Tensor, target: torch.Tensor,
             labels: torch.Tensor, weights: torch.Tensor, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ClassMix (Olsson et al., WACV 2021, as DACS uses it): half of each source image's classes
    pasted onto its target partner — the image, its labels, and full weight on pasted pixels."""
    masks = classmix_masks(source_labels, gen)
    return (mix(masks, source, target), mix(masks, source_labels, labels),
            mix(masks, torch.ones_like(weights), weights))


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def photometric(x: torch.Tensor, gen: torch.Generator, strength: float = 0.2,
                blur_prob: float = 0.5) -> torch.Tensor:
    """Random brightness, contrast, saturation and per-channel gain, then Gaussian blur.

    DACS's colour jitter (strength 0.2) and blur (sigma 0.15-1.15), per sample.
    """
    b = x.shape[0]

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(device=x.device, dtype=x.dtype)

    def factor(spread: float) -> torch.Tensor:
        return 1.0 + (draw(b, 1, 1, 1) * 2 - 1) * spread

    x = x * factor(strength)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(strength) + mean
    grey = _grey(x)
    x = (x - grey) * factor(strength) + grey
    gains = 1.0 + (draw(b, 3, 1, 1) * 2 - 1) * (strength / 4)
    x = (x * gains).clamp(0.0, 1.0)
    blur = torch.rand(b, generator=gen) < blur_prob
    if blur.any():
        sigmas = 0.15 + torch.rand(b, generator=gen)
        x = torch.stack([_blur(img, float(s)) if on else img for img, s, on in zip(x, sigmas, blur)])
    return x


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = img.shape[0]
    out = F.conv2d(F.pad(img[None], (radius, radius, 0, 0), mode="replicate"),
                   k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"),
                   k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out[0]
