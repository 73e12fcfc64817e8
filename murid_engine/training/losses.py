"""Losses of the teacher stages; each returns a scalar tensor (the trainer names the parts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE


def segmentation_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels (255 ignored); 0 when no pixel is labelled."""
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def pixel_weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """segmentation_ce with a weight per pixel: sum(w · ce) over labelled pixels / their count,
    so all-ones weights give segmentation_ce exactly; 0 when no pixel is labelled."""
    valid = labels != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    per_pixel = F.cross_entropy(logits.float(), torch.where(valid, labels, 0), reduction="none")
    return (per_pixel * weights * valid).sum() / valid.sum()


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-pixel weighted cross-entropy, averaged over all pixels (DACS's pseudo-label loss).

    Pixels labelled 255 contribute nothing; the mean is over every pixel, so a weight below 1
    lowers the loss as DACS's confidence weighting does.
    """
    valid = labels != IGNORE
    per_pixel = F.cross_entropy(logits.float(), torch.where(valid, labels, 0), reduction="none")
    return (per_pixel * weights * valid).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel Shannon entropy of the softmax, normalised to [0, 1] by log(C).

    Direct entropy minimisation on the target, as in ADVENT (Vu et al., CVPR 2019).
    """
    logp = F.log_softmax(logits.float(), dim=1)
    h = -(logp.exp() * logp).sum(dim=1)
    return h.mean() / torch.log(torch.tensor(float(logits.shape[1])))
