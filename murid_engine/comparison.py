"""A project's models side by side on a labelled target split: scores and speed.

Each model (source-only, teacher with its source bank, student) is evaluated over the whole
split (`murid_engine.inference.evaluate_model`: the same confusion matrix, IoU and mIoU as
`murid evaluate --pred`) and timed on one image at the size it sees target images at
(`murid_engine.bench.speed.measure_ms`).

The comparison is a typed record: `write_comparison` stores it as a project's
reports/evaluation.json and `read_comparison` reads it back (the Results view shows the last
one); `murid evaluate --project` prints it and the app's evaluation job returns it. JSON keys are
spelled here only; a file of an earlier version reads with defaults for what it lacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from murid_engine.bench.speed import Speed, measure_ms
from murid_engine.data.base import Dataset
from murid_engine.imageio import atomic_write_bytes, image_size
from murid_engine.json_record import read_json_record
from murid_engine.metrics import SegmentationScores
from murid_engine.model_store import project_model
from murid_engine.project import Project

ORDER = ("source_only", "teacher", "student")  # lower bound first, the deployed model last
COMPARISON_FILE = "evaluation.json"  # in a project's reports/
TITLES = {"source_only": "source-only", "teacher": "teacher", "student": "student"}


@dataclass
class ModelResult:
    name: str  # 'source_only', 'teacher' or 'student'
    scores: SegmentationScores
    speed: Speed
    backbone: str
    checkpoint: Path

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    def to_json(self) -> dict[str, Any]:
        return {**self.scores.to_json(), "ms": self.speed.ms, "speed": self.speed.to_json(),
                "backbone": self.backbone, "checkpoint": str(self.checkpoint)}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any], fallback: Speed) -> "ModelResult":
        """`fallback`: the comparison's own speed settings, for a file that has no `speed`."""
        speed = data.get("speed")
        speed = (Speed(float(speed["ms"]), _size(speed["size"]), int(speed["threads"]), int(speed["runs"]),
                       str(speed["device"])) if speed else
                 Speed(float(data["ms"]), fallback.size, fallback.threads, fallback.runs, fallback.device))
        return cls(name, SegmentationScores.from_json(data), speed, str(data.get("backbone", "")),
                   Path(data.get("checkpoint", "")))


@dataclass
class Comparison:
    project: Path
    dataset: str  # what was evaluated, e.g. "cityscapes:/data/cs, split=val (500 images)"
    split: str | None
    eval_size: tuple[int, int] | None  # (w, h) images are resized to for the network; None = native
    speed_size: tuple[int, int]  # (w, h) of the timed input
    threads: int
    device: str
    models: list[ModelResult]

    def model(self, name: str) -> ModelResult | None:
        return next((m for m in self.models if m.name == name), None)

    def speedup(self, name: str) -> float | None:
        """How many times faster than the teacher `name` runs (None without a teacher)."""
        teacher, other = self.model("teacher"), self.model(name)
        if teacher is None or other is None or other.speed.ms <= 0:
            return None
        return round(teacher.speed.ms / other.speed.ms, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": str(self.project), "dataset": self.dataset, "split": self.split,
            "eval_size": None if self.eval_size is None else list(self.eval_size),
            "input_size": list(self.speed_size), "threads": self.threads, "device": self.device,
            "models": {m.name: {**m.to_json(), "speedup_vs_teacher": self.speedup(m.name)}
                       for m in self.models},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Comparison":
        """KeyError/TypeError/ValueError when what every version wrote is missing or malformed."""
        speed_size, threads, device = _size(data["input_size"]), int(data["threads"]), str(data["device"])
        fallback = Speed(0.0, speed_size, threads, 0, device)
        eval_size = data.get("eval_size")
        return cls(Path(data.get("project", "")), str(data.get("dataset", "")), data.get("split"),
                   None if eval_size is None else _size(eval_size), speed_size, threads, device,
                   [ModelResult.from_json(str(name), m, fallback) for name, m in data["models"].items()])


def write_comparison(folder: Path, comparison: Comparison) -> Path:
    """reports/evaluation.json (written whole, then renamed into place); returns its path."""
    path = Path(folder) / COMPARISON_FILE
    atomic_write_bytes(path, (json.dumps(comparison.to_json(), indent=2) + "\n").encode())
    return path


def read_comparison(folder: Path) -> Comparison | None:
    """The comparison stored in `folder` (a project's reports/); None when there is none yet."""
    try:
        return read_json_record(Path(folder) / COMPARISON_FILE, "a model comparison", Comparison.from_json)
    except FileNotFoundError:
        return None


def _size(value: Any) -> tuple[int, int]:
    w, h = value
    return int(w), int(h)


def available_models(project: Project) -> list[str]:
    """The models whose checkpoints the project holds, in ORDER."""
    return [n for n in ORDER if project.checkpoint_path(n).is_file()]


def compare_models(project: Project, names: list[str], dataset: Dataset, threads: int | None = None,
                   device: torch.device | str = "cpu",
                   on_image: Callable[[str, int, int], None] | None = None) -> Comparison:
    """Evaluate and time each named model of the project on `dataset` (labelled).

    `on_image(model name, done, total)` follows every image (progress; it may raise to cancel).
    """
    from murid_engine.inference import evaluate_model  # torch-heavy; imported when used

    cfg = project.config
    eval_size = tuple(cfg.data.target_size) if cfg.data.target_size else None
    speed_size = eval_size or tuple(image_size(dataset.samples[0].image))
    threads = torch.get_num_threads() if threads is None else threads
    results = []
    names = sorted(names, key=ORDER.index)
    models = [project_model(project, name) for name in names]  # every missing model fails first
    for name, loaded in zip(names, models):
        model = loaded.model.to(device)
        each = None if on_image is None else (lambda i, n, name=name: on_image(name, i, n))
        scores = evaluate_model(model, dataset, desc=f"evaluate {TITLES[name]}", size=eval_size,
                                device=device, on_image=each)
        speed = measure_ms(model, speed_size, threads, device)
        backbone = (loaded.config.student_model if name == "student" else loaded.config.model).backbone
        results.append(ModelResult(name, scores, speed, backbone, loaded.path))
    return Comparison(project.root, repr(dataset), dataset.split, eval_size, speed_size, threads,
                      str(torch.device(device)), results)
