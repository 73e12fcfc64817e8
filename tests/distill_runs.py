"""Helpers of the distillation, evaluation and export tests: `murid` in-process, one smoke project.

Each test module builds one small SynthCity folder and trains one smoke project with every
stage (distill included) in a module-scoped fixture; a test that changes a project works on a
copy (`copy_project`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from murid_engine.cli import main

SYNTH_ARGS = ("--n-source", "12", "--n-target", "10", "--n-val", "6", "--size", "64x32")
# One intra-op thread: on a small machine shared with other jobs, spinning OpenMP threads make
# a smoke run many times slower, not faster.
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one-sentence error of a user's mistake (exit 2, one line, no traceback)."""
        assert self.code == 2, (self.code, self.out, self.err)
        assert "Traceback" not in self.err + self.out, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def murid(*args: object) -> Result:
    """Run `murid ARGS` in this process (one torch thread), capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    return Result(code, out.getvalue(), err.getvalue())


def smoke_project(root: Path, *extra: object) -> tuple[Path, Path]:
    """(SynthCity data, trained project) under `root`: the smoke preset, every stage."""
    data = root / "synth"
    made = murid("synth", data, *SYNTH_ARGS)
    assert made.code == 0, made.err
    project = root / "project"
    trained = murid("train", "--project", project, "--source", f"synthcity:{data}",
                    "--target", f"synthcity:{data}", "--preset", "smoke", *extra)
    assert trained.code == 0, trained.out + trained.err
    return data, project


def copy_project(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest)
    return dest


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
