"""Information Distillation: the fast single-branch student (DESIGN.md §2)."""

from .losses import distill_losses, feature_hint, kd_kl
from .student import FeatureAdapters, build_student, load_teacher, student_forward
from .trainer import FINAL, RESUME, STAGE, StudentTrainer


def distill_wanted(cfg) -> bool:
    """Whether a run of `cfg` distils a student after the teacher (`murid train`)."""
    return STAGE in cfg.stages and cfg.distill.enabled


__all__ = ["StudentTrainer", "FeatureAdapters", "build_student", "load_teacher", "student_forward",
           "distill_losses", "feature_hint", "kd_kl", "distill_wanted", "FINAL", "RESUME", "STAGE"]
