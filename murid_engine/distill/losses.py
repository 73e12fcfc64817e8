"""The distillation losses; `distill_losses` returns them as a dict of named, weighted parts.

kl        Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
          Network", 2015): per-pixel KL(teacher || student) between the softmaxes at temperature
          T, multiplied by T² so that its gradients keep the scale of a cross-entropy as T grows.
feature   Hints (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015): the student's
          features at each MR point go through a 1×1 regressor (adapter) to the teacher's
          channel count and are pulled towards the teacher's *refined* features there (MSE).
source_ce cross-entropy on the labelled source crop;
pseudo_ce cross-entropy on the confident pseudo-labels of the latest curriculum round (pixels
          below their class threshold, painted 'ignore' and padding are not trained on); the
          pixels the user labelled weigh `distill.edit_weight` (1: as a kept pseudo-label).

Pixels a round map marks NO_LOSS (padding, painted 'ignore') get no term at all, the KL
included. Where else the KL counts is `distill.kl_pixels`: 'all' (below-threshold pixels, 255,
still get the teacher's soft targets), 'kept' (only pixels the round kept: a thresholded KL) or
'weighted' (each pixel weighted by the teacher's confidence, its top softmax probability at
T = 1). With `distill.augment` the student sees a ClassMix-ed, jittered crop and the teacher
the clean one; pixels pasted from a source image (`StudentOutputs.pasted`) then take no KL and
no hint, since the teacher's prediction there is of the target pixel the paste covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE
from murid_engine.run_config import DistillConfig
from murid_engine.training.losses import pixel_weighted_ce, segmentation_ce
from murid_engine.training.round_labels import NO_LOSS, pixel_weights, split_human

from .student import FeatureAdapters


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
          weight: torch.Tensor | None = None) -> torch.Tensor:
    """T²·KL(softmax(t/T) || softmax(s/T)), summed over classes, averaged over pixels.

    `weight` (N×H×W, bool or float) is each pixel's share in the average; a pixel of weight 0
    does not count at all. Exactly 0 when the logits are equal. The teacher's logits are a
    target: no gradient flows into them.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    per_pixel = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(dim=1)
    if weight is None:
        return per_pixel.mean() * (t * t)
    w = weight.float()
    total = w.sum()
    if total <= 0:
        return student_logits.sum() * 0.0
    # where() rather than a product, so that a weight-0 pixel's non-finite term cannot leak in
    weighted = torch.where(w > 0, per_pixel * w, torch.zeros_like(per_pixel))
    return weighted.sum() / total * (t * t)


def kl_weights(pseudo_labels: torch.Tensor, teacher_logits: torch.Tensor, kl_pixels: str,
               pasted: torch.Tensor | None = None) -> torch.Tensor:
    """Each pixel's weight in the KL under `distill.kl_pixels` (N×H×W float)."""
    weight = (pseudo_labels != NO_LOSS).float()
    if pasted is not None:
        weight = weight * (~pasted).float()
    if kl_pixels == "kept":
        weight = weight * (pseudo_labels != IGNORE).float()
    elif kl_pixels == "weighted":
        weight = weight * torch.softmax(teacher_logits.detach().float(), dim=1).amax(dim=1)
    return weight


def feature_hint(adapters: FeatureAdapters, student: dict[int, torch.Tensor],
                 teacher: dict[int, torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the MR points of MSE(adapter(student features), teacher features); with `keep`
    (N×H×W bool at input size) only the feature cells whose nearest input pixel is kept count."""
    parts = []
    for point in adapters.points:
        mapped = adapters(point, student[point])
        target = teacher[point].detach().float()
        if mapped.shape[-2:] != target.shape[-2:]:
            mapped = F.interpolate(mapped, size=target.shape[-2:], mode="bilinear", align_corners=False)
        if keep is None:
            parts.append(F.mse_loss(mapped.float(), target))
            continue
        cells = F.interpolate(keep[:, None].float(), size=target.shape[-2:], mode="nearest")
        squared = (mapped.float() - target) ** 2 * cells
        parts.append(squared.sum() / (cells.sum() * target.shape[1]).clamp(min=1.0))
    return torch.stack(parts).mean()


@dataclass
class StudentOutputs:
    """What one training step computed, for `distill_losses`."""
    target_logits: torch.Tensor  # the student on the target crop
    target_features: dict[int, torch.Tensor]  # its stage outputs at the MR points
    pseudo_labels: torch.Tensor  # train ids, IGNORE where not trained on
    source_logits: torch.Tensor | None = None
    source_labels: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None  # None: --no-distill (no teacher terms)
    teacher_features: dict[int, torch.Tensor] | None = None
    pasted: torch.Tensor | None = None  # N×H×W bool: pixels ClassMix pasted from a source image


def distill_losses(out: StudentOutputs, cfg: DistillConfig,
                   adapters: FeatureAdapters | None) -> dict[str, torch.Tensor]:
    """The weighted loss parts; a part with weight 0 (or, with from_teacher off, every teacher
    term) is left out of the dict rather than added as 0."""
    losses: dict[str, torch.Tensor] = {}
    if cfg.from_teacher and out.teacher_logits is not None:
        if cfg.kl_weight > 0:
            weight = kl_weights(out.pseudo_labels, out.teacher_logits, cfg.kl_pixels, out.pasted)
            losses["kl"] = cfg.kl_weight * kd_kl(out.target_logits, out.teacher_logits,
                                                 cfg.temperature, weight)
        if cfg.feature_weight > 0 and adapters is not None and adapters.points:
            keep = None if out.pasted is None else ~out.pasted
            losses["feature"] = cfg.feature_weight * feature_hint(
                adapters, out.target_features, out.teacher_features or {}, keep)
    if cfg.source_ce_weight > 0 and out.source_logits is not None:
        losses["source_ce"] = cfg.source_ce_weight * segmentation_ce(out.source_logits, out.source_labels)
    if cfg.pseudo_ce_weight > 0:
        labels, human = split_human(out.pseudo_labels)
        labels = torch.where(labels == NO_LOSS, IGNORE, labels)
        ce = (segmentation_ce(out.target_logits, labels) if cfg.edit_weight == 1.0 else
              pixel_weighted_ce(out.target_logits, labels, pixel_weights(human, cfg.edit_weight)))
        losses["pseudo_ce"] = cfg.pseudo_ce_weight * ce
    return losses
