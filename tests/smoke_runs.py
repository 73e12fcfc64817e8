"""Helpers for the command-line tests: run `murid` in-process, and one shared trained project.

Training the smoke preset costs seconds, so the train, pseudo and predict test modules share one
trained project (built on first use); a test that changes a project works on a copy of it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

import murid_engine
from murid_engine.cli import main

SYNTH_ARGS = ("--n-source", "12", "--n-target", "10", "--n-val", "6", "--size", "64x32")
SMOKE_STAGES = "warmup,adapt,curriculum"
# One intra-op thread: on a 2-core machine shared with another job, two spinning OpenMP threads
# per process make a smoke run ten times slower, not faster.
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


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
    """Run `murid ARGS` in this process, capturing its standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    return Result(code, out.getvalue(), err.getvalue())


def synth_data(root: Path) -> Path:
    result = murid("synth", root, *SYNTH_ARGS)
    assert result.code == 0, result.err
    return root


def train_smoke(project: Path, data: Path, *extra: object) -> Result:
    return murid("train", "--project", project, "--source", f"synthcity:{data}",
                 "--target", f"synthcity:{data}", "--preset", "smoke", "--stages", SMOKE_STAGES, *extra)


_SHARED: dict[str, tuple[Path, Path, Result]] = {}


def shared_trained(tmp_path_factory) -> tuple[Path, Path, Result]:
    """(SynthCity folder, trained smoke project, the train run's result), made once per session."""
    if "run" not in _SHARED:
        base = tmp_path_factory.mktemp("smoke")
        data = synth_data(base / "synth")
        result = train_smoke(base / "project", data)
        assert result.code == 0, result.err
        _SHARED["run"] = (data, base / "project", result)
    return _SHARED["run"]


def copy_project(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest)
    return dest


def smoke_project(root: Path, *extra: object) -> tuple[Path, Path]:
    """(SynthCity data, trained project) under `root`: the smoke preset, every stage (distill too)."""
    data = synth_data(root / "synth")
    project = root / "project"
    trained = murid("train", "--project", project, "--source", f"synthcity:{data}",
                    "--target", f"synthcity:{data}", "--preset", "smoke", *extra)
    assert trained.code == 0, trained.out + trained.err
    return data, project


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def hold_lock_elsewhere(root: Path) -> subprocess.Popen:
    """Another process, a `murid train --project ROOT` stand-in, holding ROOT's project lock
    until it is killed (kill it with SIGKILL and wait for it)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.argv = ["murid", "train", "--project", {str(root)!r}]
        from murid_engine.project_lock import hold_project_lock
        hold_project_lock({str(root)!r})
        print("locked", flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, **SUBPROCESS_ENV, "PYTHONPATH": str(Path(murid_engine.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc
