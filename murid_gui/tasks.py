"""The engine jobs the app runs on its worker thread: thin calls into murid_engine, no Qt.

Each factory returns ``job(sink, control) -> result`` for ``JobRunner.start``. The training,
labelling, distillation, evaluation and export logic all live in the engine; this module only
chooses what to call with the project's settings (the same choices as the `murid` commands).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from murid_engine import usecases
from murid_engine.errors import UserError
from murid_engine.jobs import (Control, ImageProgress, Message, Progress, RoundReady, StageFinished,
                               StageStarted, StopRequested)
from murid_engine.project import Project
from murid_engine.project_lock import lock_project


def _locked(folder: Path, what: str, job):
    """The job, holding the project's writer lock while it runs (refused, in one sentence,
    while a `murid train` or another app writes the project)."""
    def locked(sink, control: Control):
        if not Project.is_project(Path(folder)):
            return job(sink, control)  # it says what is wrong with the folder
        with lock_project(Path(folder), f"MURID Studio: {what}"):
            return job(sink, control)
    return locked


def preload_engine() -> None:
    """Import what a training job needs (run once on the worker thread, at start-up).

    The first optimiser step imports ~800 modules (torch._dynamo, sympy); the garbage collector's
    full passes over that many new objects hold the GIL for 100-200 ms each, which froze the GUI
    thread at the start of the first job. Importing them at start-up, and then freezing the heap
    on the GUI thread (gui_gc.collect_and_freeze, when `preloaded` arrives), keeps those pauses out
    of the user's session.
    """
    import torch

    import murid_engine.comparison  # noqa: F401
    import murid_engine.distill  # noqa: F401
    import murid_engine.pipeline  # noqa: F401
    import murid_engine.training.trainer  # noqa: F401

    net = torch.nn.Conv2d(3, 2, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    opt.step()


def create_project(folder: Path, source: str, target: str, preset: str) -> Project:
    """A new project from a preset with its source and target datasets (as `murid train` does)."""
    return usecases.create_project(folder, source, target, preset)


def create_job(folder: Path, source: str, target: str, preset: str):
    """`create_project` on the worker (it looks at the datasets); returns the project's folder."""
    def job(sink, control: Control) -> str:
        return str(create_project(folder, source, target, preset).root)
    return job


def train_job(folder: Path):
    """The whole pipeline; continues from checkpoints/latest.pt when the project has one."""
    def job(sink, control: Control) -> bool:
        from murid_engine.pipeline import run_pipeline

        project = Project.open(folder)
        return run_pipeline(project, sink, control, resume=project.latest_checkpoint() is not None)
    return _locked(folder, "train", job)


def demo_job(folder: Path, preset: str = "cpu-demo", synth: dict[str, int] | None = None):
    """Generate SynthCity into folder/synthcity and create folder/project on it; returns the
    project (None when cancelled)."""
    def job(sink, control: Control) -> str | None:
        from murid_engine.synthcity import SynthConfig, generate

        root = Path(folder)
        data, project_dir = root / "synthcity", root / "project"
        if Project.is_project(project_dir):
            sink(Message(f"the demo project {project_dir} exists already: opening it"))
            return str(project_dir)
        stage = "generate SynthCity"
        sink(StageStarted(stage))
        try:
            # The generator's pool uses 'spawn' (fresh interpreters, no fork of this Qt process);
            # a cancel ends it within one image and removes what it wrote.
            generate(data, SynthConfig(**(synth or {})),  # defaults: the data of the cpu-demo preset
                     on_image=ImageProgress(sink, stage, control))
        except StopRequested:
            return None
        sink(StageFinished(stage))
        spec = f"synthcity:{data}"
        create_project(project_dir, spec, spec, preset)
        return str(project_dir)
    return job


def pseudo_job(folder: Path, portion: float | None = None):
    """Write the project's next pseudo-label round with its teacher (as `murid pseudo`);
    None when cancelled (the earlier rounds stay as they were)."""
    def job(sink, control: Control) -> int | None:
        written = usecases.write_next_round(Project.open(folder), portion, sink=sink, control=control)
        return None if written is None else written.round
    return _locked(folder, "pseudo-label", job)


def relabel_job(folder: Path, r: int):
    """Rewrite round r's labels with the saved threshold overrides (the teacher is not re-run)."""
    def job(sink, control: Control) -> int:
        from murid_engine.curriculum.rounds import relabel_round
        from murid_engine.training.round_labels import override_ids

        project = Project.open(folder)
        sink(StageStarted(f"relabel round {r}"))
        summary = relabel_round(project.round_dir(r), override_ids(project.load_overrides()), project.edits_dir)
        sink(RoundReady.of(summary, project.round_dir(r)))
        sink(StageFinished(f"relabel round {r}"))
        return r
    return _locked(folder, "relabel", job)


def distil_evaluate_job(folder: Path, redistil: bool = False):
    """Distil the student when there is none yet (or afresh, `redistil`: a stale student), then
    compare the project's models on target-val.

    Returns the usecases.Evaluation: the comparison (as reports/evaluation.json holds it) and the
    report's path.
    """
    def job(sink, control: Control) -> usecases.Evaluation | None:
        project = Project.open(folder)
        usecases.require_teacher(project)
        if redistil or not project.checkpoint_path("student").is_file():
            if not usecases.distil(project, sink, control, resume=False if redistil else None):
                return None  # stopped: the distillation's checkpoint was saved
        if control.checkpoint():
            return None
        return usecases.evaluate_project(project, sink=sink, control=control)  # None: stopped
    return _locked(folder, "distil and evaluate", job)


def error_analysis_job(folder: Path):
    """Every model of the project over its val split, image by image; returns the ErrorAnalysis."""
    def job(sink, control: Control):
        from murid_engine.error_analysis import analyse_project

        return analyse_project(Project.open(folder), sink, control)
    return _locked(folder, "analyse errors", job)


def export_job(folder: Path, fmt: str, out: Path | None = None):
    """Export the project's student (as `murid export`); returns the file written and its checks
    (None when cancelled: no file is left)."""
    def job(sink, control: Control) -> dict[str, Any] | None:
        from murid_engine.bench.speed import project_input_size
        from murid_engine.export import SUFFIXES, export_student
        from murid_engine.model_store import project_model

        project = Project.open(folder)
        loaded = project_model(project, "student")
        target = Path(out) if out else project.exports_dir / f"student{SUFFIXES[fmt]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = f"export {fmt}"
        sink(StageStarted(stage))
        try:  # progress after the trace and each check; a cancel is obeyed there
            result = export_student(loaded.model, fmt, target, project_input_size(project),
                                    loaded.config.data.target_size, on_step=ImageProgress(sink, stage, control))
        except StopRequested:
            return None
        sink(StageFinished(stage))
        return result.to_json()
    return job


@dataclass
class Prediction:
    """One image as the Predict view shows it: RGB, train ids and confidence at its own size."""
    stem: str
    path: Path
    rgb: Any  # uint8 H×W×3
    pred: Any  # uint8 H×W train ids
    conf: Any  # float32 H×W, the winning class's probability


def predict_job(folder: Path, which: str, source: Path | list[Path]):
    """Segment a folder of images (or a list of image files) with the project's model."""
    def job(sink, control: Control) -> list[Prediction] | None:
        from murid_engine.devices import resolve_device
        from murid_engine.imageio import list_images, read_rgb
        from murid_engine.inference import predict_image
        from murid_engine.model_store import project_model

        project = Project.open(folder)
        if isinstance(source, list):
            files = [Path(f) for f in source]
        elif Path(source).is_dir():
            files = list_images(Path(source))
        else:
            raise UserError(f"{source} is not a folder of images")
        if not files:
            raise UserError(f"no images in {source} (looked for .png, .jpg, .jpeg, .bmp, .tif, .webp)")
        loaded = project_model(project, which)
        device = resolve_device(project.config.device)
        model = loaded.model.to(device)
        stage = f"predict ({which})"
        sink(StageStarted(stage))
        out = []
        for i, path in enumerate(files):
            if control.checkpoint():  # checked per image: a cancel is obeyed within one image
                return None
            rgb = read_rgb(path)
            pred, conf = predict_image(model, rgb, loaded.config.data.target_size, device)
            out.append(Prediction(path.stem, path, rgb, pred, conf))
            sink(Progress(stage, i + 1, len(files)))
        sink(StageFinished(stage))
        return out
    return job


def save_masks_job(predictions: list[Prediction], output: Path):
    """Write the predictions as `murid predict --color` does (train-id PNGs and _color.png)."""
    def job(sink, control: Control) -> dict[str, Any]:
        out = Path(output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for i, p in enumerate(predictions):
                if (out / f"{p.stem}.png").resolve() == Path(p.path).resolve():
                    raise UserError(f"writing {out / p.stem}.png would overwrite the input image; "
                                    "choose another folder")
                usecases.save_prediction(out, p.stem, p.pred, color=True)
                sink(Progress("save masks", i + 1, len(predictions)))
        except OSError as exc:
            raise UserError(f"cannot write to {exc.filename or out}: {exc.strerror or exc}") from None
        return {"count": len(predictions), "output": str(out)}
    return job
