"""Inference speed: milliseconds per target image, teacher (with its source bank) vs student.

One image (batch 1) at a stated input size and thread count, in eval mode without autograd,
timed after a warm-up run; the figure is the median of the timed runs. The teacher's time
includes the attention of its MR points to the source bank: the partner cost that the single-
branch student removes (DESIGN.md §2).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from murid_engine.errors import UserError

DEMO_SIZE = (256, 128)  # (w, h) of a SynthCity image (its generator's default): the cpu-demo input


@dataclass(frozen=True)
class Speed:
    ms: float  # median milliseconds per image
    size: tuple[int, int]  # (w, h) of the network input
    threads: int  # torch CPU threads
    runs: int  # timed runs (after the warm-up)
    device: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch CPU threads, then restore the previous count."""
    if n < 1:
        raise UserError(f"--threads must be 1 or more, not {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_ms(model: torch.nn.Module, size: tuple[int, int], threads: int | None = None,
               device: torch.device | str = "cpu", min_runs: int = 5, min_seconds: float = 1.0,
               max_runs: int = 200) -> Speed:
    """Median ms of ``model(x)`` for one random N=1 image of `size` (w, h), after one warm-up.

    Runs at least `min_runs` times and until `min_seconds` have passed (at most `max_runs`).
    """
    device = torch.device(device)
    threads = torch.get_num_threads() if threads is None else threads
    w, h = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    was = model.training
    model.eval()
    try:
        with torch_threads(threads):
            model(x)  # warm-up: allocations, kernel selection
            _sync(device)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < max_runs and (len(times) < min_runs
                                             or time.perf_counter() - start < min_seconds):
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was)
    return Speed(round(1000 * statistics.median(times), 3), (w, h), threads, len(times), str(device))


def demo_models(size: tuple[int, int] = DEMO_SIZE) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """Freshly built cpu-demo teacher (with a bank of random source images) and student.

    Random weights time the same as trained ones; returns (teacher, student, description).
    """
    from murid_engine.config import load_preset
    from murid_engine.models.banked import BankedTeacher
    from murid_engine.models.deeplab import DeepLabV2
    from murid_engine.models.teacher import MuridTeacher

    cfg = load_preset("cpu-demo")
    torch.manual_seed(0)
    teacher = MuridTeacher(cfg.model, cfg.mr).eval()
    w, h = size
    images = torch.rand(cfg.mr.bank_size, 3, h, w, generator=torch.Generator().manual_seed(1))
    bank = teacher.build_source_bank(images) if teacher.points else {}
    student = DeepLabV2(cfg.student_model).eval()
    what = (f"cpu-demo preset, untrained: teacher {cfg.model.backbone} + MR at {list(cfg.mr.points)} "
            f"(bank of {cfg.mr.bank_size}), student {cfg.student_model.backbone}")
    return BankedTeacher(teacher, bank).eval(), student, what


def project_input_size(project) -> tuple[int, int]:
    """The size a project's models see a target image at: data.target_size, else the size of
    the first target-val (else target-train) image."""
    cfg = project.config
    if cfg.data.target_size is not None:
        return tuple(cfg.data.target_size)
    from murid_engine.data import open_dataset
    from murid_engine.imageio import image_size

    if not cfg.data.target:
        raise UserError(f"{project.root} has no target dataset (data.target) to take the input size from; "
                        "give --size WxH")
    for split in (cfg.data.val_split, cfg.data.target_split):
        try:
            ds = open_dataset(cfg.data.target, split)
        except UserError:
            continue
        return tuple(image_size(ds.samples[0].image))
    raise UserError(f"cannot open the target {cfg.data.target} of {project.root}; give --size WxH")


def bench_speed(project_dir: Path | None = None, size: tuple[int, int] | None = None,
                threads: int | None = None, min_seconds: float = 1.0) -> dict[str, Any]:
    """teacher_ms, student_ms, speed-up and the input size, for a project's models or demo models."""
    if project_dir is not None:
        from murid_engine.model_store import project_model
        from murid_engine.project import Project

        project = Project.open(project_dir)
        teacher = project_model(project, "teacher").model
        student = project_model(project, "student").model
        size = size or project_input_size(project)
        c = project.config
        what = f"project {project.root}: teacher {c.model.backbone}, student {c.student_model.backbone}"
    else:
        size = size or DEMO_SIZE
        teacher, student, what = demo_models(size)
    t = measure_ms(teacher, size, threads, min_seconds=min_seconds)
    s = measure_ms(student, size, threads, min_seconds=min_seconds)
    return {"models": what, "input_size": list(size), "threads": t.threads, "device": t.device,
            "teacher_ms": t.ms, "student_ms": s.ms, "speedup": round(t.ms / s.ms, 3),
            "runs": {"teacher": t.runs, "student": s.runs}}
