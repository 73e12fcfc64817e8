"""The jobs a user starts, one function each, called by both front ends (`murid` and the app).

Creating a project, the "one training run per project" rule, writing the next pseudo-label
round, distilling the student and evaluating the project's models. The command line and the
GUI only gather the user's choices and show the results; what is checked and what is called
lives here, so the two cannot drift apart. torch loads inside the functions that need it, so
that importing this module (from `murid --help` or the app's start-up) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murid_engine.config import apply_overrides, load_preset
from murid_engine.curriculum.round_summary import RoundSummary
from murid_engine.data import parse_spec
from murid_engine.errors import UserError
from murid_engine.jobs import (Control, EvaluationResult, ImageProgress, Progress, RoundReady, StageFinished,
                               StageStarted, StopRequested)
from murid_engine.project import Project
from murid_engine.run_config import RunConfig

if TYPE_CHECKING:
    from murid_engine.comparison import Comparison

Sink = Callable[[Any], None]
DEFAULT_PRESET = "cpu-demo"
COMPARED = ("source_only", "teacher", "student")  # the models an evaluation compares, when held


def _quiet(_event: Any) -> None:
    pass


# ---------------------------------------------------------------------------- projects
def absolute_spec(spec: str) -> str:
    """`KIND:PATH` with PATH made absolute (the kind is checked first).

    Stored absolute, so the project finds its data from any working folder (the app's too).
    """
    kind, path = parse_spec(spec)
    return f"{kind}:{path.resolve()}"


def with_datasets(cfg: RunConfig, source: str | None, target: str | None) -> RunConfig:
    """`cfg` with the given source/target specs stored absolute (None keeps the current one)."""
    if source:
        cfg.data.source = absolute_spec(source)
    if target:
        cfg.data.target = absolute_spec(target)
    return cfg


def create_project(folder: Path, source: str, target: str, preset: str | None = None,
                   overrides: Sequence[str] = ()) -> Project:
    """A new project in `folder` from a preset (or JSON file) with its source and target datasets."""
    if not source or not target:
        raise UserError("a project needs a source dataset and a target dataset (KIND:PATH)")
    cfg = apply_overrides(load_preset(preset or DEFAULT_PRESET), list(overrides))
    return Project.create(Path(folder), with_datasets(cfg, source, target).validate())


def check_can_train(project: Project, resume: bool) -> None:
    """A project holds one training run: a fresh start over an interrupted one is refused."""
    if not resume and project.latest_checkpoint() is not None:
        raise UserError(f"{project.root} already holds a training run; continue it with --resume "
                        "(Continue training in the app), or train in a new project folder")


# ---------------------------------------------------------------------------- pseudo-labels
@dataclass(frozen=True)
class RoundWritten:
    round: int
    folder: Path
    summary: RoundSummary  # its round.json: portion, kept fraction, per-class counts, images


def check_portion(portion: float | None, what: str = "the portion") -> None:
    # `not 0 < p <= 1` is also true for NaN, which float() accepts from the command line.
    if portion is not None and not (0 < portion <= 1):
        raise UserError(f"{what} must be a number in (0, 1], not {portion:g}")


def write_next_round(project: Project, portion: float | None = None, device: str | None = None,
                     sink: Sink = _quiet, control: Control | None = None) -> RoundWritten | None:
    """Label the target-train images with the project's teacher as the next round.

    Numbered after the latest complete round (from 1) and written exactly as the curriculum
    writes its rounds, so overrides and edits apply and a resumed curriculum trains on it.
    `portion` None: the project's portion override, else the curriculum schedule's. Progress
    follows every image and `control` is checked there: a stop returns None within one image,
    the new round's folder removed and the earlier rounds as they were.
    """
    check_portion(portion)
    cfg = project.config
    if not cfg.data.target:
        raise UserError(f"{project.project_file} names no target dataset (data.target) to pseudo-label")
    from murid_engine.data import open_dataset
    from murid_engine.devices import resolve_device
    from murid_engine.model_store import project_model
    from murid_engine.training.round_labels import label_round, round_portion

    require_teacher(project)
    teacher = project_model(project, "teacher")
    dev = resolve_device(device or cfg.device)
    r = (project.latest_round() or 0) + 1
    p = portion if portion is not None else round_portion(project, r)
    sink(StageStarted("pseudo-label"))
    # Read image by image while labelling (memory does not grow with the number of images).
    target = open_dataset(cfg.data.target, cfg.data.target_split)
    try:
        summary = label_round(project, r, p, teacher.model.to(dev), dev, target=target,
                              on_image=ImageProgress(sink, f"pseudo-label round {r}", control))
    except StopRequested:
        sink(StageFinished("pseudo-label"))
        return None
    folder = project.round_dir(r)
    sink(RoundReady.of(summary, folder))
    sink(StageFinished("pseudo-label"))
    return RoundWritten(r, Path(folder), summary)


# ---------------------------------------------------------------------------- distillation
def require_teacher(project: Project) -> None:
    path = project.checkpoint_path("teacher")
    if not path.is_file():
        raise UserError(f"{project.root} has no trained teacher yet (checkpoints/{path.name}); "
                        "train it first (`murid train`, or the Train view)")


def distil(project: Project, sink: Sink, control: Control | None = None,
           resume: bool | None = None) -> bool:
    """Train the project's student against its teacher; False when stopped (its checkpoint saved).

    `resume` None continues a stopped distillation when there is one.
    """
    require_teacher(project)
    from murid_engine.distill import StudentTrainer

    if resume is None:
        resume = StudentTrainer.has_resume_point(project)
    return StudentTrainer(project, sink, control or Control()).run(resume=resume)


# ---------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    comparison: Comparison
    report: Path  # reports/evaluation.html (beside its confusion matrices and evaluation.json)

    def to_json(self) -> dict[str, Any]:
        return {**self.comparison.to_json(), "report": str(self.report)}


def evaluate_project(project: Project, names: Sequence[str] | None = None, spec: str | None = None,
                     split: str | None = None, threads: int | None = None,
                     sink: Sink = _quiet, control: Control | None = None) -> Evaluation | None:
    """Score the project's models side by side on a labelled target split and write the report.

    `names` None: every model of COMPARED the project holds. `spec` None: the project's target;
    `split` None: its validation split. Progress follows every image, and `control` is checked
    there too: a stop returns None within one image and leaves the last report as it was.
    """
    from murid_engine.comparison import available_models, compare_models
    from murid_engine.data import open_dataset, resolve_split
    from murid_engine.devices import resolve_device
    from murid_engine.report import write_report

    cfg = project.config
    if names is None:
        names = [n for n in available_models(project) if n in COMPARED]
        if not names:
            raise UserError(f"{project.root} has no trained model to evaluate yet; train it first")
    spec = spec or cfg.data.target
    if not spec:
        raise UserError(f"{project.root} has no target dataset (data.target); give --target KIND:PATH")
    dataset = open_dataset(spec, resolve_split(spec, split, cfg.data.val_split)).require_labels()
    sink(StageStarted("evaluate"))

    def each(name: str, done: int, total: int) -> None:
        sink(Progress(f"evaluate {name.replace('_', '-')}", done, total))
        if control is not None and control.checkpoint():
            raise StopRequested

    try:
        comparison = compare_models(project, list(names), dataset, threads, resolve_device(cfg.device),
                                    on_image=each)
    except StopRequested:
        sink(StageFinished("evaluate"))
        return None
    report = write_report(project.reports_dir, comparison)
    for m in comparison.models:
        sink(EvaluationResult(m.name, m.to_json()))
    sink(StageFinished("evaluate"))
    return Evaluation(comparison, report)


# ---------------------------------------------------------------------------- predictions
COLOR_SUFFIX = "_color"  # <stem>_color.png: the prediction in the Cityscapes palette


CITYSCAPES_SUFFIX = "_leftImg8bit"  # dropped: `murid evaluate --gt cityscapes:...` looks for <stem>.png


def prediction_names(stem: str, color: bool) -> list[str]:
    """A Cityscapes-style `<stem>_leftImg8bit` image is written as `<stem>.png`, whichever kind
    of input it came from (a plain folder included)."""
    stem = stem.removesuffix(CITYSCAPES_SUFFIX) or stem
    return [f"{stem}.png", f"{stem}{COLOR_SUFFIX}.png"] if color else [f"{stem}.png"]


def save_prediction(output: Path, stem: str, pred: Any, color: bool) -> None:
    """`<stem>.png` of train ids (what `murid evaluate --pred` scores), and `<stem>_color.png`."""
    from murid_engine.imageio import write_grey_png, write_train_id_color_png

    labels_name, *color_name = prediction_names(stem, color)
    write_grey_png(Path(output) / labels_name, pred)
    if color_name:
        write_train_id_color_png(Path(output) / color_name[0], pred)
