"""The whole MURID job of a project: the teacher's stages, then the student's distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from murid_engine.interrupts import stop_on_interrupt  # noqa: F401  (also imported from here)
from murid_engine.jobs import Control, EventSink, JobError, NullSink
from murid_engine.project import Project

if TYPE_CHECKING:
    from murid_engine.distributed import DistContext


def run_pipeline(project: Project, sink: EventSink | None = None, control: Control | None = None,
                 resume: bool = False, dist: DistContext | None = None) -> bool:
    """Run the project's stages; False when stopped (a checkpoint was saved to resume from).

    The teacher's stages come first; then, when 'distill' is among the stages and
    distill.enabled, the student is distilled from the teacher it just wrote. A resumed run
    whose distillation had started goes straight back to it: the teacher was complete then.
    Under torchrun (`dist` from murid_engine.distributed) every rank calls this; only rank 0's
    events reach `sink`, the others' are dropped, so the user sees one run.
    """
    # torch loads only when training
    from murid_engine.distill import StudentTrainer, distill_wanted
    from murid_engine.distributed import DistContext
    from murid_engine.training.trainer import TeacherTrainer

    dist = dist or DistContext()
    sink = (sink or NullSink()) if dist.is_main else NullSink()
    control = control or Control()
    trainers: list = []  # their loader workers are shut down when the job ends, however it ends
    try:
        with stop_on_interrupt(control):
            teacher = TeacherTrainer(project, sink, control, dist=dist)
            trainers.append(teacher)
            # Rank 0 reads the project's state for all (a file another rank sees late could
            # send it down the other branch).
            to_distill = resume and distill_wanted(project.config) and dist.agree(
                lambda: StudentTrainer.has_resume_point(project))
            if not to_distill:
                if not teacher.run(resume=resume):
                    return False
            if not distill_wanted(project.config):
                return True
            if teacher.batches is not None:
                teacher.batches.close()  # its workers would idle through the distillation
            student = StudentTrainer(project, sink, control, domains=teacher.domains, dist=dist)
            trainers.append(student)
            return student.run(resume=resume)
    except Exception as exc:
        sink(JobError.from_exception(exc))
        raise
    finally:
        for trainer in trainers:
            if trainer.batches is not None:
                trainer.batches.close()
