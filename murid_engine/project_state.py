"""Where a project's training stands, read from its files: what is done and what can come next.

The app shows it when a project opens (from its reader thread: this reads metrics.jsonl and looks
at the checkpoints, it never loads one). A stage is done when metrics.jsonl records its last
iteration (the stage runner always records it). The student is *stale* when the teacher's
checkpoint was written after the student's: the teacher was trained on after the distillation,
so the student no longer comes from the teacher the project holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from murid_engine.project import Project


@dataclass(frozen=True)
class StageProgress:
    name: str
    done: int  # the last iteration metrics.jsonl records
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True)
class ProjectState:
    stages: tuple[StageProgress, ...]  # the run's stages, in order (a disabled one left out)
    rounds: int  # curriculum rounds of the run (0 without a curriculum)
    has_run: bool  # a resume point or a trained model is on disk
    has_teacher: bool
    has_student: bool
    student_stale: bool

    @property
    def finished(self) -> bool:
        return self.has_run and all(s.finished for s in self.stages)

    def next_steps(self) -> str:
        """One sentence: what the user can do now."""
        if not self.has_run:
            return "Start training: the stages run one after another, and each can be paused or stopped."
        if not self.finished:
            return "Continue training from the last checkpoint."
        if self.student_stale:
            return ("The student is older than the teacher it came from: re-distil it in "
                    "Distil & evaluate.")
        return ("Training is finished. Next: review the pseudo-labels (Review), evaluate and export "
                "the student (Distil & evaluate), or try it on your images (Predict).")


def run_stages(cfg) -> list[tuple[str, int]]:
    """(stage, iterations) of a run of `cfg`, as `murid train` runs them."""
    from murid_engine.distill import distill_wanted
    from murid_engine.training.runner import STAGE_TYPES
    from murid_engine.training.trainer import TEACHER_STAGES

    out = [(s, STAGE_TYPES[s].length(cfg)) for s in cfg.stages
           if s in TEACHER_STAGES and STAGE_TYPES[s].enabled(cfg)]
    if distill_wanted(cfg):
        out.append(("distill", cfg.distill.iterations))
    return out


def student_is_stale(project: Project) -> bool:
    teacher, student = project.checkpoint_path("teacher"), project.checkpoint_path("student")
    return (teacher.is_file() and student.is_file()
            and teacher.stat().st_mtime_ns > student.stat().st_mtime_ns)


def project_state(project: Project, records: Iterable[Any] | None = None) -> ProjectState:
    """The state of `project`; `records` are its metrics.jsonl records (records.read_records)
    when the caller has read them."""
    from murid_engine.records import LossRecord, read_records

    cfg = project.config
    last: dict[str, int] = {}
    for r in read_records(project.read_metrics()) if records is None else records:
        if isinstance(r, LossRecord):
            last[r.stage] = max(last.get(r.stage, 0), r.iteration)
    stages = tuple(StageProgress(name, last.get(name, 0), total) for name, total in run_stages(cfg))
    has_teacher = project.checkpoint_path("teacher").is_file()
    has_student = project.checkpoint_path("student").is_file()
    rounds = cfg.curriculum.rounds if any(s.name == "curriculum" for s in stages) else 0
    return ProjectState(stages, rounds, bool(project.checkpoints()), has_teacher,
                        has_student, student_is_stale(project))
