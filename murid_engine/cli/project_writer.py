"""A `murid train` that writes into a project: the lock, a lost attempt's records, a failed start.

`open_locked` takes the project's lock before anything is written (after creating the project
when it is new), says when --resume will use the previous checkpoint, and removes the metric
records of an attempt that left no checkpoint. `remove_failed_skeleton` deletes a project this
command created when the run failed before it wrote anything of value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from murid_engine.project import Project
from murid_engine.project_lock import hold_project_lock

TEACHER_STAGES = ("warmup", "adapt", "curriculum")  # training.trainer.TEACHER_STAGES (no torch here)


class TrainWriter:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.existed = self.folder.is_dir()  # an empty folder the user made stays
        self.was_project = Project.is_project(self.folder)
        self.created = False

    def open_locked(self, open_or_create: Callable[[], Project], resume: bool) -> Project:
        if Project.is_project(self.folder):
            hold_project_lock(self.folder)  # before open_or_create may rewrite project.json
            project = open_or_create()
        else:
            project = open_or_create()
            self.created = True
            hold_project_lock(project.root)
        if project.latest_checkpoint() is None:
            # No resume point: the teacher's records are a killed attempt's; they start again.
            project.forget_unsaved_progress(TEACHER_STAGES)
        elif resume and (note := project.resume_note()):
            print(note, file=sys.stderr, flush=True)
        return project

    def remove_failed_skeleton(self) -> None:
        if self.was_project:
            return
        if Project.is_project(self.folder):
            Project(self.folder, None).remove_if_skeleton(keep_folder=self.existed)  # type: ignore[arg-type]
        elif not self.existed and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()  # a create that failed on its first write (a full disk)
