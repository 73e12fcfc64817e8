"""`murid evaluate --project` (teacher, student and source-only side by side) and `murid bench speed`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from smoke_runs import copy_project, murid, one_thread, smoke_project
from murid_engine.comparison import read_comparison
from murid_engine.labels import IGNORE, LABEL_ID_TO_TRAIN_ID, NUM_CLASSES
from murid_engine.project import Project
from murid_engine.report import CELL, MARGIN, confusion_image


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return smoke_project(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module")
def both(trained) -> dict:
    """`evaluate --model both --json -` of the trained project, parsed."""
    result = murid("evaluate", "--project", trained[1], "--model", "both", "--threads", "1", "--json", "-")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _recorded(project: Path) -> dict[str, float]:
    """The last target-val mIoU training recorded for each model."""
    out = {}
    for r in Project.open(project).read_metrics():
        if r["kind"] == "eval":
            out[r["model"]] = r["miou"]
    return out


def _labelled_val_pixels(data: Path) -> np.ndarray:
    """Pixels of each train id in the target's val label files (read here, not by the engine)."""
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    files = sorted((data / "target" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(files) == 6
    for path in files:
        train_ids = LABEL_ID_TO_TRAIN_ID[np.asarray(Image.open(path))]
        counts += np.bincount(train_ids[train_ids != IGNORE].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return counts


def test_both_reports_teacher_student_and_source_only_side_by_side(trained, both):
    models = both["models"]
    assert list(models) == ["source_only", "teacher", "student"]
    recorded = _recorded(trained[1])
    labelled = _labelled_val_pixels(trained[0])
    for name, entry in models.items():
        assert entry["ms"] > 0
        assert entry["miou"] == pytest.approx(recorded[name], abs=1e-12)  # the same scores as training's
        # Each score follows from the confusion matrix (rows: ground truth), which counts every
        # labelled pixel of the val split's label files once.
        m = np.asarray(entry["confusion"], dtype=np.int64)
        assert (m.sum(axis=1) + np.asarray(entry["invalid_predictions"]) == labelled).all()
        tp, union = np.diag(m), m.sum(axis=1) + np.asarray(entry["invalid_predictions"]) + m.sum(axis=0) - np.diag(m)
        iou = [float(t / u) if u else None for t, u in zip(tp, union)]
        assert list(entry["per_class_iou"].values()) == pytest.approx(iou, abs=1e-12)
        present = [v for v in iou if v is not None]
        assert entry["miou"] == pytest.approx(sum(present) / len(present), abs=1e-12)
        assert entry["per_class_iou"]["road"] is not None and len(entry["per_class_iou"]) == 19
        assert np.asarray(entry["confusion"]).shape == (19, 19)
        assert entry["n_images"] == 6 and entry["speed"]["size"] == [64, 32]
    assert models["teacher"]["speedup_vs_teacher"] == 1.0
    ratio = models["teacher"]["ms"] / models["student"]["ms"]
    assert models["student"]["speedup_vs_teacher"] == pytest.approx(ratio, rel=1e-2)
    assert both["input_size"] == [64, 32] and both["threads"] == 1 and both["split"] == "val"
    assert models["student"]["backbone"] == "tiny"


def test_the_report_is_written_into_the_project(trained, both):
    reports = trained[1] / "reports"
    page = (reports / "evaluation.html").read_text()
    assert Path(both["report"]) == reports / "evaluation.html"
    for title in ("source-only", "teacher", "student"):
        assert title in page
    assert "ms / image" in page and "road" in page and "confusion_student.png" in page
    for name in ("source_only", "teacher", "student"):
        img = cv2.imread(str(reports / f"confusion_{name}.png"))
        assert img is not None and img.shape[0] > 19 * CELL and img.shape[1] > 19 * CELL
    stored = read_comparison(reports)  # what the Results view shows when the project opens
    assert stored.model("student").scores.miou == both["models"]["student"]["miou"]
    assert stored.to_json() == {k: v for k, v in both.items() if k != "report"}


def test_text_output_names_models_and_speed(trained):
    result = murid("evaluate", "--project", trained[1], "--model", "student", "--threads", "1")
    assert result.code == 0, result.err
    assert "student" in result.out and "teacher" not in result.out.split("speed:")[0]
    assert "ms / image" in result.out and "64x32" in result.out and "report written to" in result.out


def test_confusion_image_colours_the_share_of_each_row():
    m = np.array([[10, 0, 0], [5, 5, 0], [0, 0, 0]])  # class 2 absent from the labels
    img = confusion_image(m, ("road", "sidewalk", "building"))
    top = MARGIN + 30

    def cell(r, c):  # a pixel near the cell's corner, away from its number
        return tuple(int(v) for v in img[top + r * CELL + 2, MARGIN + c * CELL + 2])

    viridis = cv2.applyColorMap(np.array([[0, 128, 255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0]
    assert cell(0, 0) == tuple(int(v) for v in viridis[2])  # 100 %
    assert cell(1, 0) == tuple(int(v) for v in viridis[1])  # 50 %
    assert cell(0, 1) == tuple(int(v) for v in viridis[0])  # 0 %
    assert cell(2, 2) == (200, 200, 200)  # no ground truth: grey


def test_evaluate_on_another_target(trained):
    data = trained[0]
    result = murid("evaluate", "--project", trained[1], "--model", "teacher", "--target",
                   f"cityscapes:{data / 'target'}", "--split", "train", "--threads", "1", "--json", "-")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert list(report["models"]) == ["teacher"] and report["models"]["teacher"]["n_images"] == 10


def test_errors_are_one_sentence(trained, tmp_path):
    project = copy_project(trained[1], tmp_path / "p")
    (project / "checkpoints" / "teacher.pt").unlink()
    line = murid("evaluate", "--project", project, "--model", "both").error_line()
    assert "no teacher model yet" in line and "murid train" in line
    line = murid("evaluate", "--project", trained[1], "--model", "oracle").error_line()
    assert "invalid choice: 'oracle'" in line
    line = murid("evaluate", "--project", trained[1], "--target", "folder:/nonexistent").error_line()
    assert "/nonexistent" in line


def test_both_without_a_student_evaluates_the_teacher_with_a_note(trained, tmp_path):
    project = copy_project(trained[1], tmp_path / "p")
    (project / "checkpoints" / "student.pt").unlink()
    result = murid("evaluate", "--project", project, "--threads", "1", "--json", "-")
    assert result.code == 0, result.err
    assert list(json.loads(result.out)["models"]) == ["source_only", "teacher"]
    assert "murid distill" in result.err


def test_bench_speed_of_a_project(trained):
    result = murid("bench", "speed", "--project", trained[1], "--threads", "1", "--seconds", "0.1",
                   "--no-training", "--no-onnx", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["teacher_ms"] > 0 and report["student_ms"] > 0
    assert report["input_size"] == [64, 32] and report["threads"] == 1
    assert report["speedup"] == pytest.approx(report["teacher_ms"] / report["student_ms"], rel=1e-2)


def test_bench_speed_without_a_project_builds_cpu_demo_models():
    result = murid("bench", "speed", "--size", "64x32", "--threads", "1", "--seconds", "0.1",
                   "--no-training", "--no-onnx")
    assert result.code == 0, result.err
    assert "teacher_ms" in result.out and "student_ms" in result.out and "64x32" in result.out
    assert "cpu-demo" in result.out
