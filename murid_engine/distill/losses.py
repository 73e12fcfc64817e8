"""The distillation losses; `distill_losses` returns them as a dict of named, weighted parts.

kl        Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
          Network", 2015): per-pixel KL(teacher || student) between the softmaxes at temperature
          T, multiplied by T² so that its gradients keep the scale of a cross-entropy as T grows.
feature   Hints (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015): the student's
          features at each MR point go through a 1×1 regressor (adapter) to the teacher's
          channel count and are pulled towards the teacher's *refined* features there (MSE).
source_ce cross-entropy on the labelled source crop;
pseudo_ce cross-entropy on the confident pseudo-labels of the latest curriculum round (pixels
          below their class threshold, painted 'ignore' and padding are not trained on).

Pixels a round map marks NO_LOSS (padding, painted 'ignore') get no term at all, the KL
included; below-threshold pixels (255) still get the teacher's soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE
from murid_engine.run_config import DistillConfig
from murid_engine.training.losses import segmentation_ce
from murid_engine.training.round_labels import NO_LOSS

from .student import FeatureAdapters


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """T²·KL(softmax(t/T) || softmax(s/T)), summed over classes, averaged over pixels.

    `mask` (N×H×W bool) keeps the pixels that count; exactly 0 when the logits are equal.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    per_pixel = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(dim=1)
    if mask is not None:
        if not mask.any():
            return student_logits.sum() * 0.0
        per_pixel = per_pixel[mask]
    return per_pixel.mean() * (t * t)


def feature_hint(adapters: FeatureAdapters, student: dict[int, torch.Tensor],
                 teacher: dict[int, torch.Tensor]) -> torch.Tensor:
    """Mean over the MR points of MSE(adapter(student features), teacher features)."""
    parts = []
    for point in adapters.points:
        mapped = adapters(point, student[point])
        target = teacher[point].detach().float()
        if mapped.shape[-2:] != target.shape[-2:]:
            mapped = F.interpolate(mapped, size=target.shape[-2:], mode="bilinear", align_corners=False)
        parts.append(F.mse_loss(mapped.float(), target))
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


def distill_losses(out: StudentOutputs, cfg: DistillConfig,
                   adapters: FeatureAdapters | None) -> dict[str, torch.Tensor]:
    """The weighted loss parts; a part with weight 0 (or, with from_teacher off, every teacher
    term) is left out of the dict rather than added as 0."""
    losses: dict[str, torch.Tensor] = {}
    if cfg.from_teacher and out.teacher_logits is not None:
        if cfg.kl_weight > 0:
            valid = out.pseudo_labels != NO_LOSS
            losses["kl"] = cfg.kl_weight * kd_kl(out.target_logits, out.teacher_logits,
                                                 cfg.temperature, valid)
        if cfg.feature_weight > 0 and adapters is not None and adapters.points:
            losses["feature"] = cfg.feature_weight * feature_hint(
                adapters, out.target_features, out.teacher_features or {})
    if cfg.source_ce_weight > 0 and out.source_logits is not None:
        losses["source_ce"] = cfg.source_ce_weight * segmentation_ce(out.source_logits, out.source_labels)
    if cfg.pseudo_ce_weight > 0:
        labels = torch.where(out.pseudo_labels == NO_LOSS, IGNORE, out.pseudo_labels)
        losses["pseudo_ce"] = cfg.pseudo_ce_weight * segmentation_ce(out.target_logits, labels)
    return losses
