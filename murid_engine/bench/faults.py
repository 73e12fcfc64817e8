"""Fault injection: kill a smoke-preset `murid train` with SIGKILL at random moments, then resume.

Each run trains a new project in a subprocess, kills it (kill -9: no handler runs, nothing is
flushed) at a moment drawn uniformly from the length of an uninterrupted run, then checks what
a user would find:

- the project opens, its metrics read, and its resume point (if any) loads;
- `murid train --project DIR --resume` completes (the lock died with the killed process);
- no metric record appears twice, and no temporary file is left in the project.

A killed run whose project passes every check has *recovered*; one whose files are damaged
(the project or its checkpoint does not load, a record is duplicated, a temporary file is left)
is *corrupted*; a resume that fails for another reason is counted apart (`failed`), with its
error, and so is a run that ended before its kill came (`finished_before_kill`).
`murid bench faults --runs N` prints the counts; tests/test_faults.py runs a few.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from murid_engine.errors import UserError

SYNTH_ARGS = ("--n-source", "12", "--n-target", "10", "--n-val", "6", "--size", "64x32")
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class FaultConfig:
    runs: int = 30
    seed: int = 0
    stages: str | None = None  # None: every stage of the smoke preset (distill included)
    kill_window: tuple[float, float] | None = None  # seconds after the start; None: a clean run's length
    # "start": the kill's clock starts with the process; "training": with the run's first metric
    # record, so a kill lands inside training however fast the machine starts and trains.
    clock_from: str = "start"
    timeout_s: float = 600.0  # per subprocess


@dataclass
class RunOutcome:
    kill_at_s: float
    status: str  # recovered | corrupted | failed | finished (the run ended before the kill)
    detail: str = ""


@dataclass
class FaultResult:
    outcomes: list[RunOutcome] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)

    def counts(self) -> Counter:
        return Counter(o.status for o in self.outcomes)

    def to_json(self) -> dict:
        counts = self.counts()
        return {"runs": len(self.outcomes),
                "recovered": counts["recovered"],
                "corrupted": counts["corrupted"],
                "failed": counts["failed"],
                "finished_before_kill": counts["finished"],
                "kill_window_s": list(self.window),
                "outcomes": [vars(o) for o in self.outcomes]}


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])  # the checkout this module runs from
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, **ENV, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _murid(*args: object) -> list[str]:
    return [sys.executable, "-m", "murid_engine", *map(str, args)]


def train_command(project: Path, data: Path, stages: str | None, resume: bool = False) -> list[str]:
    if resume:
        return _murid("train", "--project", project, "--resume")
    spec = f"synthcity:{data}"
    extra = ("--stages", stages) if stages else ()
    return _murid("train", "--project", project, "--source", spec, "--target", spec,
                  "--preset", "smoke", *extra)


def make_data(folder: Path) -> Path:
    done = subprocess.run(_murid("synth", folder, *SYNTH_ARGS), env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"murid synth failed: {done.stderr.strip()}")
    return folder


def check_project(project: Path) -> str | None:
    """Why the project's files are damaged, or None when they are whole."""
    from murid_engine.checkpoint import load_checkpoint
    from murid_engine.project import Project, _record_key

    try:
        opened = Project.open(project)
        records = opened.read_metrics()
        for name in opened.checkpoints():
            load_checkpoint(opened.checkpoint_path(name))
    except UserError as exc:
        return str(exc)
    keys = Counter(_record_key(r) for r in records)
    twice = [k for k, n in keys.items() if n > 1]
    if twice:
        return f"{len(twice)} metric records appear more than once, e.g. {twice[0]}"
    temps = [p for p in project.rglob("*.tmp")]
    if temps:
        return f"temporary file left: {temps[0]}"
    return None


def one_run(project: Path, data: Path, cfg: FaultConfig, kill_at: float) -> RunOutcome:
    env = _env()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would block the run
        proc = subprocess.Popen(train_command(project, data, cfg.stages), env=env,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            if cfg.clock_from == "training":
                _wait_for_first_record(proc, project / "metrics.jsonl", cfg.timeout_s)
            proc.wait(timeout=kill_at)
            status = "finished"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            status = None
        if status == "finished" and proc.returncode != 0:
            err.seek(0)
            return RunOutcome(kill_at, "failed", f"the run failed before the kill: {err.read()[-300:]}")
    from murid_engine.project import Project

    if status is None:
        if Project.is_project(project):
            problem = check_project_loads(project)
            if problem is not None:
                return RunOutcome(kill_at, "corrupted", f"after the kill: {problem}")
        # Killed before the project existed: the user runs the same command again.
        resume = Project.is_project(project)
        done = subprocess.run(train_command(project, data, cfg.stages, resume=resume), env=env,
                              capture_output=True, text=True, timeout=cfg.timeout_s)
        if done.returncode != 0:
            return RunOutcome(kill_at, "failed", f"--resume exited {done.returncode}: "
                                                 f"{done.stderr.strip()[-300:]}")
    problem = check_project(project)
    if problem is not None:
        return RunOutcome(kill_at, "corrupted", problem)
    if not (project / "checkpoints" / "teacher.pt").is_file():
        return RunOutcome(kill_at, "failed", "the resumed run wrote no teacher.pt")
    return RunOutcome(kill_at, status or "recovered")


def _wait_for_first_record(proc: subprocess.Popen, metrics: Path, timeout_s: float) -> None:
    """Return once `metrics` holds a record or the process has ended (polled every 5 ms)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.stat().st_size > 0:
            return
        time.sleep(0.005)


def check_project_loads(project: Path) -> str | None:
    """Right after a kill: the project opens, its metrics read and its resume point loads."""
    from murid_engine.checkpoint import load_checkpoint
    from murid_engine.project import Project

    try:
        opened = Project.open(project)
        opened.read_metrics()
        latest = opened.latest_checkpoint()
        if latest is not None:
            load_checkpoint(latest)
    except UserError as exc:
        return str(exc)
    return None


def run_faults(cfg: FaultConfig, data: Path | None = None, work: Path | None = None,
               log=print) -> FaultResult:
    """`cfg.runs` killed-and-resumed training runs; `log` hears one line per run."""
    if cfg.runs < 1:
        raise UserError(f"--runs must be 1 or more, not {cfg.runs}")
    with tempfile.TemporaryDirectory(prefix="murid-faults-", dir=work) as tmp:
        tmp = Path(tmp)
        data = data or make_data(tmp / "synthcity")
        window = cfg.kill_window
        if window is None:  # a clean run's length: kills land anywhere in a run
            started = time.monotonic()
            done = subprocess.run(train_command(tmp / "clean", data, cfg.stages), env=_env(),
                                  capture_output=True, text=True, timeout=cfg.timeout_s)
            if done.returncode != 0:
                raise RuntimeError(f"the uninterrupted run failed: {done.stderr.strip()[-300:]}")
            window = (0.0, 0.95 * (time.monotonic() - started))
        rng = random.Random(cfg.seed)
        result = FaultResult(window=window)
        for i in range(cfg.runs):
            kill_at = rng.uniform(*window)
            outcome = one_run(tmp / f"run_{i:03d}", data, cfg, kill_at)
            result.outcomes.append(outcome)
            log(f"run {i + 1}/{cfg.runs}: killed at {kill_at:.1f} s: {outcome.status}"
                + (f" ({outcome.detail})" if outcome.detail else ""))
        return result


def format_faults(result: FaultResult) -> str:
    data = result.to_json()
    return (f"runs {data['runs']}  recovered {data['recovered']}  corrupted {data['corrupted']}"
            + (f"  failed {data['failed']}" if data["failed"] else "")
            + f"  (kill -9 at a random moment in {data['kill_window_s'][0]:.1f}-"
              f"{data['kill_window_s'][1]:.1f} s; {data['finished_before_kill']} ended before it)")
