"""`murid distill`: train the project's single-branch student against its trained teacher.

    murid distill --project DIR [--resume] [--no-distill] [--set distill.KEY=VALUE ...] [--device D]

Needs checkpoints/teacher.pt (from `murid train`). Writes checkpoints/student.pt and the
student's target-val score; `murid train` with the distill stage runs the same job.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from murid_engine.config import apply_overrides
from murid_engine.errors import UserError
from murid_engine.project import Project
from murid_engine.project_lock import hold_project_lock
from murid_engine.records import evaluations
from murid_engine.usecases import distil, require_teacher

from .progress_sink import TerminalSink

CHANGEABLE = ("distill.", "student_model.")  # settings that may change once the teacher is trained


def register(sub) -> None:
    p = sub.add_parser("distill", help="distil the fast single-branch student from a trained teacher",
                       description="Train the project's student (no MR, no source partner) from its "
                                   "trained teacher: cross-entropy on source labels and on the "
                                   "teacher's confident pseudo-labels, and with distill.from_teacher "
                                   "true also KL to the teacher's predictions and feature hints at the "
                                   "MR points (the cpu-demo and paper presets set it false: that "
                                   "student measured better; docs/BENCHMARKS.md).")
    p.add_argument("--project", type=Path, required=True, metavar="DIR", help="a project with a trained teacher")
    p.add_argument("--resume", action="store_true", help="continue a stopped distillation")
    p.add_argument("--no-distill", action="store_true",
                   help="the student learns from source labels and pseudo-labels only "
                        "(distill.from_teacher=false; the cpu-demo and paper presets already do)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a distill.* or student_model.* setting, e.g. --set distill.iterations=500")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(run=run)


def prepare(args: argparse.Namespace) -> Project:
    """The project, its configuration updated by the command line, checked for a teacher."""
    from murid_engine.checkpoint import load_checkpoint  # torch loads only when distilling
    from murid_engine.distill import RESUME, StudentTrainer

    project = Project.open(args.project)
    hold_project_lock(project.root)  # before the config is changed; released when the command returns
    require_teacher(project)
    for item in args.overrides:
        if not item.strip().startswith(CHANGEABLE):
            raise UserError(f"--set {item}: only distill.* and student_model.* settings can change "
                            "once the teacher is trained")
    changes = bool(args.overrides or args.no_distill or args.device)
    if args.resume:
        if changes:
            raise UserError("--resume continues a distillation with its own settings; leave out "
                            "--set, --no-distill and --device")
        return project
    stopped = project.checkpoint_path(RESUME)
    if StudentTrainer.has_resume_point(project):
        if load_checkpoint(stopped).iteration < project.config.distill.iterations:
            raise UserError(f"{args.project} holds a stopped distillation; continue it with --resume, "
                            f"or delete checkpoints/{stopped.name} to start again")
    if changes:
        cfg = apply_overrides(project.config, list(args.overrides))
        if args.device:
            cfg = apply_overrides(cfg, [f"device={args.device}"], where="--device")
        project.save_config(cfg.ablate(no_distill=args.no_distill).validate())
    return project


def run(args: argparse.Namespace) -> int:
    project = prepare(args)
    from murid_engine.jobs import Control, JobError
    from murid_engine.pipeline import stop_on_interrupt

    if not args.resume and project.checkpoint_path("student").is_file():
        print(f"replacing the student of {args.project}")
    control = Control()
    with TerminalSink() as sink:
        try:
            with stop_on_interrupt(control):
                done = distil(project, sink, control, resume=args.resume)
        except UserError:
            raise
        except Exception as exc:
            sink(JobError.from_exception(exc))
            raise
    if not done:
        print(f"stopped; continue with: murid distill --project {args.project} --resume")
        return 130
    latest = {e.model: e.miou for e in evaluations(project.read_metrics())
              if e.model in ("teacher", "student") and e.miou is not None}
    for name, miou in latest.items():
        print(f"{name:<8} target-val mIoU {100 * miou:.2f}")
    print(f"student: {project.checkpoint_path('student')}")
    return 0
