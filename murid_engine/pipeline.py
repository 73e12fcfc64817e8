"""The whole MURID job of a project: the teacher's stages, then the student's distillation."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from murid_engine.jobs import Control, EventSink, JobError, NullSink
from murid_engine.project import Project


@contextmanager
def stop_on_interrupt(control: Control):
    """Ctrl+C asks the job to stop (it saves a checkpoint first); a second Ctrl+C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if control.stopped:
            raise KeyboardInterrupt
        control.stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_pipeline(project: Project, sink: EventSink | None = None, control: Control | None = None,
                 resume: bool = False) -> bool:
    """Run the project's stages; False when stopped (a checkpoint was saved to resume from).

    The teacher's stages come first; then, when 'distill' is among the stages and
    distill.enabled, the student is distilled from the teacher it just wrote. A resumed run
    whose distillation had started goes straight back to it: the teacher was complete then.
    """
    # torch loads only when training
    from murid_engine.distill import StudentTrainer, distill_wanted
    from murid_engine.training.trainer import TeacherTrainer

    sink = sink or NullSink()
    control = control or Control()
    try:
        with stop_on_interrupt(control):
            teacher = TeacherTrainer(project, sink, control)
            if not (resume and distill_wanted(project.config)
                    and StudentTrainer.has_resume_point(project)):
                if not teacher.run(resume=resume):
                    return False
            if not distill_wanted(project.config):
                return True
            student = StudentTrainer(project, sink, control, domains=teacher.domains)
            return student.run(resume=resume)
    except Exception as exc:
        sink(JobError.from_exception(exc))
        raise
