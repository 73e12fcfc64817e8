"""`murid train`: create (or reopen) a project and run the MURID stages in it.

    murid train --project DIR [--source KIND:PATH] [--target KIND:PATH] [--preset NAME]
                [--stages warmup,adapt,curriculum,distill] [--set key=value ...] [--resume]
                [--no-mr] [--no-curriculum] [--no-distill]

On several processes, the same command under torchrun (DESIGN.md §7):

    torchrun --standalone --nproc_per_node N -m murid_engine train --project DIR ...

Rank 0 creates or opens the project and speaks for the run (progress, the summary, a user's
mistake as one sentence); the other ranks open the project it made and stay quiet, and a
mistake rank 0 finds stops them too, with the same exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from murid_engine.config import apply_overrides, list_presets, load_preset
from murid_engine.errors import UserError
from murid_engine.project import Project
from murid_engine.records import evaluations
from murid_engine.run_config import RunConfig
from murid_engine.usecases import check_can_train, with_datasets

from .progress_sink import TerminalSink
from .project_writer import TrainWriter

if TYPE_CHECKING:
    from murid_engine.distributed import DistContext


def register(sub) -> None:
    p = sub.add_parser("train", help="train the MURID teacher (and student) in a project folder",
                       description="Create a project (or continue one with --resume) and run its "
                                   "stages: warmup, adapt, curriculum, distill.")
    p.add_argument("--project", type=Path, required=True, metavar="DIR", help="project folder")
    p.add_argument("--source", metavar="KIND:PATH", help="labelled source domain, e.g. gta5:/data/gta5")
    p.add_argument("--target", metavar="KIND:PATH",
                   help="unlabelled target domain, e.g. cityscapes:/data/cityscapes")
    p.add_argument("--preset", default=None,
                   help=f"preset name ({', '.join(list_presets())}) or JSON file; default cpu-demo")
    p.add_argument("--stages", default=None, help="comma-separated stages to run, in order")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change one setting, e.g. --set curriculum.iterations_per_round=200")
    p.add_argument("--resume", action="store_true", help="continue the project's interrupted run")
    p.add_argument("--no-mr", action="store_true", help="ablation: no Mutual Refinement")
    p.add_argument("--no-curriculum", action="store_true", help="ablation: no self-training rounds")
    p.add_argument("--no-distill", action="store_true",
                   help="the student learns from pseudo-labels only (distill.from_teacher=false; "
                        "the cpu-demo and paper presets already do)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(run=run)


def configure(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    """The preset (or stored config) with the command line's changes, validated."""
    cfg = apply_overrides(base, list(args.overrides))
    cfg = with_datasets(cfg, args.source, args.target)
    if args.stages:
        cfg = apply_overrides(cfg, [f"stages={args.stages}"], where="--stages")
    if args.device:
        cfg = apply_overrides(cfg, [f"device={args.device}"], where="--device")
    cfg = cfg.ablate(no_mr=args.no_mr, no_curriculum=args.no_curriculum, no_distill=args.no_distill)
    return cfg.validate()


def open_or_create(args: argparse.Namespace) -> Project:
    changes = bool(args.source or args.target or args.preset or args.stages or args.overrides
                   or args.no_mr or args.no_curriculum or args.no_distill or args.device)
    if Project.is_project(args.project):
        project = Project.open(args.project)
        check_can_train(project, args.resume)
        if project.latest_checkpoint() is not None:
            if changes:
                raise UserError("--resume continues a run with its own settings; leave out "
                                "--source, --target, --preset, --stages, --set and the ablations")
            return project
        base = load_preset(args.preset) if args.preset else project.config
        project.save_config(configure(args, base))
        return project
    if args.resume:
        raise UserError(f"{args.project} is not a MURID project, so there is nothing to resume")
    cfg = configure(args, load_preset(args.preset or "cpu-demo"))
    return Project.create(args.project, cfg)


def run(args: argparse.Namespace) -> int:
    # torch is imported only when training
    from murid_engine.distributed import RanksAgree, distributed_session

    with distributed_session() as dist:
        try:
            return _train(args, dist)
        except RanksAgree as exc:
            if not dist.distributed:
                raise
            if dist.is_main:  # one sentence for the whole run
                print(f"murid {args.command}: error: {exc}", file=sys.stderr, flush=True)
            # No rank exits before rank 0 has said it: torchrun stops the rest at the first exit.
            dist.barrier()
            return exc.exit_code
        except UserError as exc:
            if not dist.distributed:
                raise
            raise UserError(f"rank {dist.rank}: {exc}") from None


def _train(args: argparse.Namespace, dist: DistContext) -> int:
    from murid_engine.pipeline import run_pipeline

    made: list[Project] = []
    writer = TrainWriter(args.project)  # rank 0 alone locks the project and writes into it
    try:
        # Rank 0 alone creates the project (or refuses to); the others open what it made.
        dist.agree(lambda: made.append(writer.open_locked(lambda: open_or_create(args), args.resume)))
        project = made[0] if made else Project.open(args.project)
        with TerminalSink() if dist.is_main else contextlib.nullcontext() as sink:
            done = run_pipeline(project, sink, resume=args.resume, dist=dist)
    except Exception:
        if dist.is_main:
            writer.remove_failed_skeleton()  # a failed first train leaves no empty project behind
        raise
    if not dist.is_main:
        return 0 if done else 130
    if not done:
        print(f"stopped; continue with: murid train --project {args.project} --resume")
        return 130
    for e in evaluations(project.read_metrics()):
        if e.miou is not None:
            print(f"{e.stage:<11} {e.model:<12} target-val mIoU {100 * e.miou:.2f}")
    print(f"project {args.project}: checkpoints in {project.checkpoints_dir}")
    return 0
