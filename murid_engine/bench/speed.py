"""Inference speed: milliseconds per target image, teacher (with its source bank) vs student.

One image (batch 1) at a stated input size and thread count, in eval mode without autograd,
timed after a warm-up run; the figure is the median of the timed runs. The teacher's time
includes the attention of its MR points to the source bank: the partner cost that the single-
branch student removes (DESIGN.md §2). The teacher is timed twice, with the bank's keys and values
cached (how it runs) and projected again for every image (models/bank_cache.py), so the
cache's gain is measured in the same run; the three PyTorch timings alternate in rounds so
that a shared machine's changing load falls on each of them alike. Each model is also exported to ONNX (murid_engine.export,
which checks the file against PyTorch) and timed in onnxruntime's CPU provider at the same size,
thread count and timing rule, since that is how a deployed student runs.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
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
    x = example_input(size).to(device)

    def run() -> None:
        model(x)
        _sync(device)

    was = model.training
    model.eval()
    try:
        with torch_threads(threads):
            times = time_runs(run, min_runs, min_seconds, max_runs)
    finally:
        model.train(was)
    return Speed(round(1000 * statistics.median(times), 3), tuple(size), threads, len(times), str(device))


def example_input(size: tuple[int, int]) -> torch.Tensor:
    """The one N=1 image of `size` (w, h) every timing uses: the same values for every runtime."""
    w, h = size
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def time_runs(run: Callable[[], None], min_runs: int, min_seconds: float, max_runs: int) -> list[float]:
    """Seconds of each timed call of `run`, after one untimed warm-up call (allocations, kernel
    selection); at least `min_runs` calls and until `min_seconds` have passed, at most `max_runs`."""
    run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


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


def onnx_missing() -> str | None:
    """Why the ONNX figures cannot be made here (a package is missing), or None."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (pip install onnx onnxruntime): "
                "no onnxruntime figures")
    return None


def measure_onnx_ms(path: Path, size: tuple[int, int], threads: int, min_runs: int = 5,
                    min_seconds: float = 1.0, max_runs: int = 200) -> Speed:
    """Median ms of an exported model in onnxruntime's CPU provider, timed as `measure_ms` times
    PyTorch: one N=1 image of `size` (w, h), `threads` intra-op threads, after one warm-up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One image at a time has no independent operators to run side by side; extra inter-op
    # threads would only compete with the intra-op ones for the same cores.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: example_input(size).numpy()}
    times = time_runs(lambda: session.run(None, feed), min_runs, min_seconds, max_runs)
    return Speed(round(1000 * statistics.median(times), 3), tuple(size), threads, len(times),
                 "onnxruntime CPUExecutionProvider")


def onnx_speeds(models: dict[str, torch.nn.Module], size: tuple[int, int], threads: int,
                min_seconds: float = 1.0) -> dict[str, Any]:
    """{"available": True, "<name>_ms": ..., ...} for each model exported to a temporary ONNX file,
    or {"available": False, "note": why} when onnx or onnxruntime is not installed."""
    missing = onnx_missing()
    if missing:
        return {"available": False, "note": missing}
    import onnxruntime as ort

    from murid_engine.export import export_student

    result: dict[str, Any] = {"available": True, "version": ort.__version__,
                              "provider": "CPUExecutionProvider", "threads": threads, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="murid-onnx-") as tmp:
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            # export_student runs the file against PyTorch at two sizes and refuses a mismatch,
            # so these figures are for a model that computes what the PyTorch one does.
            export_student(model, "onnx", path, size)
            speed = measure_onnx_ms(path, size, threads, min_seconds=min_seconds)
            result[f"{name}_ms"] = speed.ms
            result["runs"][name] = speed.runs
    if "teacher_ms" in result and "student_ms" in result:
        result["speedup"] = round(result["teacher_ms"] / result["student_ms"], 3)
    return result


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a figure depends on: CPU, cores, threads, library versions and the load when measured
    (a shared machine's load average explains a slow figure better than any guess)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    ort_version = None
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        ort_version = ort.__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    # More runnable processes than half the cores before we start: our threads will share them,
    # and on two cores that slowed the same step twofold and more in our runs.
    busy = load is not None and usable is not None and load[0] > usable / 2
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": ort_version, "python": platform.python_version(), "gpu": gpu,
            "load_average": load, "busy": busy}


ROUNDS = 3  # the PyTorch timings alternate in rounds: a shared machine's load falls on each alike


def interleaved_speeds(teacher: torch.nn.Module, student: torch.nn.Module, size: tuple[int, int],
                       threads: int, min_seconds: float) -> tuple[Speed, Speed, Speed]:
    """(teacher, teacher with its bank cache off, student), each timed in ROUNDS alternating
    turns of `min_seconds` / ROUNDS; a figure is the median of its turns' medians."""
    from murid_engine.models.bank_cache import bank_caching

    turns: list[list[Speed]] = [[], [], []]
    for _ in range(ROUNDS):
        turns[0].append(measure_ms(teacher, size, threads, min_seconds=min_seconds / ROUNDS))
        with bank_caching(teacher, enabled=False):
            turns[1].append(measure_ms(teacher, size, threads, min_seconds=min_seconds / ROUNDS))
        turns[2].append(measure_ms(student, size, threads, min_seconds=min_seconds / ROUNDS))
    return tuple(replace(runs[0], ms=round(statistics.median(r.ms for r in runs), 3),
                         runs=sum(r.runs for r in runs)) for runs in turns)


def bench_speed(project_dir: Path | None = None, size: tuple[int, int] | None = None,
                threads: int | None = None, min_seconds: float = 1.0, onnx: bool = True) -> dict[str, Any]:
    """teacher_ms, student_ms, speed-up and the input size, for a project's models or demo models,
    in PyTorch and (with `onnx`) onnxruntime, with the machine they were measured on."""
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
    threads = torch.get_num_threads() if threads is None else threads
    with torch_threads(threads):
        machine = machine_info()
    t, tu, s = interleaved_speeds(teacher, student, size, threads, min_seconds)
    result = {"models": what, "input_size": list(size), "threads": t.threads, "device": t.device,
              "teacher_ms": t.ms, "teacher_uncached_ms": tu.ms, "student_ms": s.ms,
              "speedup": round(t.ms / s.ms, 3),
              "runs": {"teacher": t.runs, "teacher_uncached": tu.runs, "student": s.runs},
              "machine": machine}
    if onnx:
        # After the PyTorch timing: exporting moves a model to the CPU.
        with torch_threads(threads):
            result["onnxruntime"] = onnx_speeds({"teacher": teacher, "student": student}, size, threads,
                                                min_seconds)
    return result
