"""Models for inference, rebuilt from a project or from a lone checkpoint file.

Every checkpoint carries its RunConfig, so a file alone rebuilds its network. What a file holds:

    checkpoints/teacher.pt      'teacher' (MuridTeacher) + 'bank' (pooled source features)
    checkpoints/student.pt      'student' (DeepLabV2 of config.student_model)
    checkpoints/source_only.pt  'net' (DeepLabV2 of config.model, after warmup)
    checkpoints/latest.pt       'teacher' (+ 'ema'): the resume point, no bank

Every model returned maps x (N×3×H×W in [0, 1]) to {'out': logits}, in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from murid_engine.checkpoint import Checkpoint, load_checkpoint
from murid_engine.errors import UserError
from murid_engine.models.banked import BankedTeacher, bank_from_state
from murid_engine.models.deeplab import DeepLabV2
from murid_engine.models.teacher import MuridTeacher
from murid_engine.project import Project
from murid_engine.run_config import RunConfig

MODEL_FILES = {"teacher": "teacher", "student": "student", "source_only": "source_only"}


@dataclass
class LoadedModel:
    name: str  # 'teacher', 'student' or 'source_only'
    model: torch.nn.Module
    config: RunConfig
    path: Path


def _load_state(module: torch.nn.Module, state: dict, path: Path, what: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:160]
        raise UserError(f"the {what} weights in {path} do not fit its configuration ({first})") from None


def model_from_checkpoint(ckpt: Checkpoint, which: str | None = None) -> LoadedModel:
    """The `which` model of a checkpoint; None picks student, else teacher, else source_only."""
    held = ckpt.models
    if which is None:
        which = ("student" if "student" in held else "teacher" if "teacher" in held
                 else "source_only" if "net" in held else "")
        if not which:
            raise UserError(f"checkpoint {ckpt.path} holds no model to predict with")
    cfg = ckpt.config
    if which == "student":
        model = DeepLabV2(cfg.student_model)
        _load_state(model, ckpt.model_state("student"), ckpt.path, "student")
    elif which == "source_only":
        model = DeepLabV2(cfg.model)
        _load_state(model, ckpt.model_state("net"), ckpt.path, "source-only")
    elif which == "teacher":
        banked = teacher_from_checkpoint(ckpt)
        # Without MR the teacher is a plain network.
        model = banked if banked.teacher.mr_enabled and banked.teacher.points else banked.teacher.net
    else:
        raise UserError(f"unknown model '{which}' (teacher, student or source_only)")
    return LoadedModel(which, model.eval(), cfg, ckpt.path)


def teacher_from_checkpoint(ckpt: Checkpoint) -> BankedTeacher:
    """The MuridTeacher of a checkpoint with its source bank (empty without MR), in eval mode.

    The one place a teacher is rebuilt: prediction, evaluation and distillation (which needs
    the features at the MR points that the BankedTeacher returns) all load it here.
    """
    cfg = ckpt.config
    teacher = MuridTeacher(cfg.model, cfg.mr)
    _load_state(teacher, ckpt.model_state("teacher"), ckpt.path, "teacher")
    bank = bank_from_state(ckpt.models.get("bank", {}))
    if teacher.mr_enabled and teacher.points and not bank:
        raise UserError(f"checkpoint {ckpt.path} holds a teacher without its source bank; "
                        "use checkpoints/teacher.pt, written when the teacher's training ends")
    histograms = ckpt.models.get("bank_classes", {}).get("histograms")
    return BankedTeacher(teacher, bank, histograms, cfg.mr.bank_select if histograms is not None else 0).eval()


def load_model(path: Path, which: str | None = None) -> LoadedModel:
    return model_from_checkpoint(load_checkpoint(Path(path)), which)


def project_model(project: Project, which: str) -> LoadedModel:
    """A project's teacher, student or source-only model, with a clear error if not trained yet."""
    if which not in MODEL_FILES:
        raise UserError(f"unknown model '{which}' (teacher, student or source_only)")
    path = project.checkpoint_path(MODEL_FILES[which])
    if not path.is_file():
        hint = {"teacher": "`murid train` (its adapt or curriculum stage)",
                "student": "`murid distill`", "source_only": "`murid train` (its warmup stage)"}[which]
        raise UserError(f"{project.root} has no {which.replace('_', '-')} model yet ({path.name}); "
                        f"run {hint} first")
    return load_model(path, which)
