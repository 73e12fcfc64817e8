"""`murid bench quality`: what each part of MURID is worth on SynthCity, measured end to end.

Runs the preset once in full and once per ablation, each in its own project folder, and reads
the per-stage evaluations every run writes to metrics.jsonl: source-only (the network after
warmup, the lower bound), after adapt, after each curriculum round, and (with distillation) the
student. The oracle — the same network trained on the target's own labels with the plain
supervised loop — is the upper bound. Every figure is target-val mIoU with its wall time.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from murid_engine.config import apply_overrides, load_preset
from murid_engine.data import open_dataset
from murid_engine.errors import UserError
from murid_engine.jobs import EventSink
from murid_engine.project import Project

RUNS = ("full", "no-mr", "no-curriculum", "no-distill", "oracle")
ABLATIONS = {"full": {}, "no-mr": {"no_mr": True}, "no-curriculum": {"no_curriculum": True}}


@dataclass
class QualityConfig:
    data: Path  # a SynthCity folder
    workdir: Path  # one project folder per run is made here
    preset: str = "cpu-demo"
    runs: tuple[str, ...] = ("full", "no-distill", "no-mr", "no-curriculum", "oracle")
    overrides: tuple[str, ...] = ()  # --set key=value for every run
    oracle_iterations: int = 2000
    threads: int = 2


@dataclass
class RunResult:
    run: str
    wall_s: float
    evaluations: list[dict] = field(default_factory=list)  # metrics.jsonl 'eval' records

    @property
    def final_miou(self) -> float | None:
        return self.evaluations[-1]["miou"] if self.evaluations else None


def _project_run(cfg: QualityConfig, run: str, sink: EventSink) -> RunResult:
    from murid_engine.pipeline import run_pipeline

    config = apply_overrides(load_preset(cfg.preset), list(cfg.overrides))
    config.data.source = config.data.source or f"synthcity:{cfg.data.resolve()}"
    config.data.target = config.data.target or f"synthcity:{cfg.data.resolve()}"
    config = config.ablate(**ABLATIONS[run]).validate()
    root = cfg.workdir / run
    if Project.is_project(root):
        raise UserError(f"{root} already holds a benchmark run; give another --workdir or remove it")
    project = Project.create(root, config)
    start = time.perf_counter()
    run_pipeline(project, sink)
    wall = time.perf_counter() - start
    evals = [{k: r.get(k) for k in ("stage", "round", "model", "iteration", "time_s", "miou",
                                     "per_class_iou")}
             for r in project.read_metrics() if r.get("kind") == "eval"]
    # The student's clock starts with distillation: put it after the teacher's last record.
    teacher_s = max((e["time_s"] for e in evals if e["stage"] != "distill"), default=0.0)
    for e in evals:
        e["run_time_s"] = e["time_s"] + (teacher_s if e["stage"] == "distill" else 0.0)
    return RunResult(run, round(wall, 1), evals)


def _no_distill_run(cfg: QualityConfig, sink: EventSink) -> RunResult:
    """The student of the full run's teacher, trained on pseudo-labels alone (--no-distill).

    The teacher is the same as the full run's (its folder is copied without the student), so
    the difference between the two students is distillation's contribution alone.
    """
    import shutil

    from murid_engine.distill import StudentTrainer

    full, root = cfg.workdir / "full", cfg.workdir / "no-distill"
    if not (full / "checkpoints" / "teacher.pt").is_file():
        raise UserError("the no-distill run needs the full run first (--runs full,no-distill)")
    if root.exists():
        raise UserError(f"{root} already exists; give another --workdir or remove it")
    shutil.copytree(full, root, ignore=shutil.ignore_patterns("student.pt", "latest_student.pt"))
    project = Project.open(root)
    project.save_config(project.config.ablate(no_distill=True).validate())
    start = time.perf_counter()
    StudentTrainer(project, sink).run()
    wall = time.perf_counter() - start
    evals = [{k: r.get(k) for k in ("stage", "round", "model", "iteration", "time_s", "miou",
                                     "per_class_iou")}
             for r in project.read_metrics() if r.get("kind") == "eval" and r.get("stage") == "distill"]
    for e in evals:
        e["run_time_s"] = e["time_s"]  # the student alone: the teacher is the full run's
    return RunResult("no-distill", round(wall, 1), evals)


def _oracle_run(cfg: QualityConfig) -> RunResult:
    from murid_engine.inference import evaluate_model
    from murid_engine.models import DeepLabV2
    from murid_engine.training.batches import DecodedImages
    from murid_engine.training.supervised import SupervisedConfig, train_supervised

    preset = apply_overrides(load_preset(cfg.preset), list(cfg.overrides))
    spec = f"synthcity:{cfg.data}"
    start = time.perf_counter()
    data = DecodedImages(open_dataset(spec, "train"), with_labels=True, desc="decode target labels")
    torch.manual_seed(preset.seed)
    model = DeepLabV2(preset.model)
    train_supervised(model, data, SupervisedConfig(
        iterations=cfg.oracle_iterations, batch_size=preset.data.batch_size, lr=preset.optim.lr,
        seed=preset.seed, augment=preset.data.augment()), desc="oracle")
    scores = evaluate_model(model, open_dataset(spec, "val"), desc="evaluate oracle").to_json()
    wall = time.perf_counter() - start
    return RunResult("oracle", round(wall, 1), [{
        "stage": "oracle", "round": None, "model": "oracle", "iteration": cfg.oracle_iterations,
        "time_s": round(wall, 1), "run_time_s": round(wall, 1), "miou": scores["miou"],
        "per_class_iou": scores["per_class_iou"]}])


def run_quality(cfg: QualityConfig, sink: EventSink) -> dict:
    unknown = [r for r in cfg.runs if r not in RUNS]
    if unknown:
        raise UserError(f"unknown benchmark run '{unknown[0]}' (runs: {', '.join(RUNS)})")
    if not (cfg.data / "synthcity.json").is_file():
        raise UserError(f"{cfg.data} is not a SynthCity folder (no synthcity.json); make one with `murid synth`")
    torch.set_num_threads(cfg.threads)
    results = []
    for run in cfg.runs:
        if run == "oracle":
            results.append(_oracle_run(cfg))
        elif run == "no-distill":
            results.append(_no_distill_run(cfg, sink))
        else:
            results.append(_project_run(cfg, run, sink))
    return {"preset": cfg.preset, "overrides": list(cfg.overrides), "data": str(cfg.data),
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": cfg.threads,
                        "torch": torch.__version__},
            "runs": [asdict(r) | {"final_miou": r.final_miou} for r in results]}


def format_quality(result: dict) -> str:
    """A Markdown table: one row per evaluation of every run, with the time it was reached."""
    lines = ["| run | model after | target-val mIoU | time since the run began (s) |", "|---|---|---|---|"]
    for run in result["runs"]:
        for e in run["evaluations"]:
            where = e["stage"] + (f" round {e['round']}" if e.get("round") else "")
            seconds = e.get("run_time_s", e["time_s"])
            lines.append(f"| {run['run']} | {where} ({e['model']}) | {100 * e['miou']:.1f} | {seconds:.0f} |")
        lines.append(f"| {run['run']} | **whole run** | **{100 * (run['final_miou'] or 0):.1f}** | {run['wall_s']:.0f} |")
    return "\n".join(lines)
