"""Peak memory of the dataset-wide commands: does it grow with the number of images?

`murid predict`, `murid evaluate --project` and `murid pseudo --project` must stream over their
dataset (issue 7, item 4), so their peak memory should be the same for 100 images as for 1,000.
This runs each of them as a child process on SynthCity target sets of two sizes, with a smoke
project trained once on the smaller set, and reads the child's peak resident set size from the
kernel: ru_maxrss of RUSAGE_CHILDREN in a fresh wrapper process per command (kB on Linux; it
covers the command and any process it waited for). A command counts as not growing when its peak at the larger count is at most
`GROWTH_LIMIT` times its peak at the smaller one.

Everything runs on the CPU with the given thread count, so that the figures compare across
machines and a GPU's memory (which RSS does not see) cannot hide a leak.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from murid_engine.errors import UserError

COMMANDS = ("predict", "evaluate", "pseudo")
GROWTH_LIMIT = 1.2  # peak(large) / peak(small) at or below this: "does not grow"
RULE = (f"peak RSS at the larger image count at most {GROWTH_LIMIT:g}x the peak at the smaller "
        "count counts as not growing")
SOURCE_IMAGES = 8  # the smoke project's source set: enough for its bank of 4 and a few batches


@dataclass(frozen=True)
class MemoryConfig:
    counts: tuple[int, int] = (100, 1000)  # target images (train and val each) of the two runs
    size: tuple[int, int] = (256, 128)  # (w, h) of the SynthCity images: the cpu-demo size
    threads: int = 1  # torch threads of every child (OMP_NUM_THREADS)
    commands: tuple[str, ...] = COMMANDS  # which of COMMANDS to measure

    def validate(self) -> MemoryConfig:
        unknown = [c for c in self.commands if c not in COMMANDS]
        if unknown or not self.commands:
            raise UserError(f"--memory-commands takes a comma-separated list of {', '.join(COMMANDS)}, "
                            f"not '{','.join(self.commands)}'")
        small, large = self.counts
        if not 1 <= small < large:
            raise UserError(f"--memory-images needs two counts, the first smaller, both 1 or more "
                            f"(e.g. 100,1000), not {small},{large}")
        w, h = self.size
        if not (32 <= w <= 4096 and 32 <= h <= 4096):
            raise UserError(f"--memory-size {w}x{h} is outside 32..4096 pixels per side")
        if self.threads < 1:
            raise UserError(f"--threads must be 1 or more, not {self.threads}")
        return self


@dataclass(frozen=True)
class PeakMemory:
    command: str
    images: int
    peak_rss_mb: float
    seconds: float


@dataclass
class MemoryReport:
    config: MemoryConfig
    runs: list[PeakMemory] = field(default_factory=list)
    floor_mb: float = 0.0  # peak RSS of a child that only imports torch and the engine's models

    def peak(self, command: str, images: int) -> float:
        return next(r.peak_rss_mb for r in self.runs if r.command == command and r.images == images)

    def growth(self, command: str) -> float:
        small, large = self.config.counts
        return self.peak(command, large) / self.peak(command, small)

    def passes(self, command: str) -> bool:
        return self.growth(command) <= GROWTH_LIMIT

    def to_json(self) -> dict[str, Any]:
        small, large = self.config.counts
        commands = {}
        for command in dict.fromkeys(r.command for r in self.runs):
            commands[command] = {
                "peak_rss_mb": {str(small): self.peak(command, small), str(large): self.peak(command, large)},
                "seconds": {str(r.images): r.seconds for r in self.runs if r.command == command},
                "growth": round(self.growth(command), 3),
                "extra_mb": round(self.peak(command, large) - self.peak(command, small), 1),
                "pass": self.passes(command),
            }
        return {"images": [small, large], "size": list(self.config.size), "threads": self.config.threads,
                "floor_mb": self.floor_mb, "growth_limit": GROWTH_LIMIT, "rule": RULE,
                "measured": "peak RSS of each command's process (ru_maxrss of a fresh wrapper's children), CPU only",
                "commands": commands, "runs": [asdict(r) for r in self.runs]}


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    # The child imports this very engine even where it is not installed (a source checkout).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU only: see the module's docstring
    return env


# Runs the command and writes its peak RSS (kB on Linux, bytes on macOS) to the file named first.
# A child's ru_maxrss starts at its parent's size at fork time (the forked copy is counted until
# exec replaces it), so the command must be forked from this small interpreter, not from the
# benchmark's own process with torch (or a test runner) loaded.
_WRAPPER = """import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(args: list[str], env: dict[str, str], what: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one command, run in a fresh wrapper process (see _WRAPPER);
    its output is kept for an error message."""
    with tempfile.TemporaryDirectory(prefix="murid-rss-") as tmp:
        peak_file = Path(tmp) / "maxrss"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _WRAPPER, str(peak_file), *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not peak_file.is_file():
            lines = done.stdout.decode(errors="replace").strip().splitlines()
            raise UserError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")
        peak = int(peak_file.read_text())
    kb = peak / 1024 if sys.platform == "darwin" else peak
    return round(kb / 1024, 1), round(seconds, 2)


def _murid(*args: object) -> list[str]:
    return [sys.executable, "-m", "murid_engine", *(str(a) for a in args)]


def _project_for(trained: Path, dest: Path, target: str) -> Path:
    """A copy of the trained project whose target (what pseudo labels, evaluate scores) is `target`."""
    from murid_engine.project import Project

    shutil.copytree(trained, dest)
    project = Project.open(dest)
    cfg = project.config
    project.save_config(replace(cfg, device="cpu", data=replace(cfg.data, target=target)))
    return dest


def _log(progress, text: str) -> None:
    if progress is not None:
        progress(text)


def measure_memory(cfg: MemoryConfig, work: Path | None = None, progress=None) -> MemoryReport:
    """Generate the two SynthCity sets, train a smoke project on the smaller, and measure each
    command's peak RSS on each set. `work` keeps the files (default: a temporary folder);
    `progress(text)` is told what runs next."""
    cfg.validate()
    from murid_engine.synthcity import SynthConfig, generate

    report = MemoryReport(cfg)
    env = _child_env(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="murid-memory-") as tmp:
        root = Path(work) if work is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        w, h = cfg.size
        data = {}
        for n in cfg.counts:
            _log(progress, f"generating SynthCity with {n} target-train and {n} val images of {w}x{h}")
            data[n] = root / f"synth{n}"
            generate(data[n], SynthConfig(n_source=SOURCE_IMAGES, n_target=n, n_val=n, width=w, height=h))
        small = cfg.counts[0]
        trained = root / "trained"
        _log(progress, f"training a smoke project on the {small}-image set")
        run_measured(_murid("train", "--project", trained, "--source", f"synthcity:{data[small]}",
                            "--target", f"synthcity:{data[small]}", "--preset", "smoke",
                            "--set", "device=cpu"), env, "training the smoke project")
        report.floor_mb, _ = run_measured(
            [sys.executable, "-c", "import torch, murid_engine.models.teacher"], env, "importing torch")
        for n in cfg.counts:
            target = f"synthcity:{data[n]}"
            project = _project_for(trained, root / f"project{n}", target)
            commands = {
                "predict": _murid("predict", "--project", project, "--input", target, "--split", "val",
                                  "--output", root / f"pred{n}", "--device", "cpu"),
                "evaluate": _murid("evaluate", "--project", project, "--model", "both", "--split", "val",
                                   "--threads", cfg.threads),
                "pseudo": _murid("pseudo", "--project", project, "--device", "cpu"),
            }
            for command in cfg.commands:
                _log(progress, f"murid {command} on {n} images")
                peak, seconds = run_measured(commands[command], env, f"murid {command} on {n} images")
                report.runs.append(PeakMemory(command, n, peak, seconds))
    return report
