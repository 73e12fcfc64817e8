"""Error analysis: per-image IoU by the evaluation's rule, error maps, and the cached analysis of a project."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import copy_of, trained

from murid_engine.error_analysis import (
    CORRECT,
    VOID,
    WRONG,
    AnalysisWriter,
    ErrorAnalysis,
    analyse_project,
    error_map,
    errors_dir,
    load_analysis,
    per_image_iou,
    per_image_miou,
)
from murid_engine.jobs import CollectingSink, Control, Progress
from murid_engine.labels import IGNORE
from murid_engine.metrics import ConfusionMatrix, confusion_matrix
from murid_engine.project import Project


def test_per_image_iou_by_hand_and_as_the_evaluation_scores_one_image():
    gt = np.array([[0, 0, 0, 1],
                   [1, 1, 2, IGNORE]], np.uint8)
    pred = np.array([[0, 0, 1, 1],
                     [1, 255, 5, 0]], np.uint8)  # 255: no prediction (a wrong pixel of class 1)
    iou = per_image_iou(confusion_matrix(gt, pred))
    # road: tp 2, gt 3, predicted 2 -> 2/3; sidewalk: tp 2, gt 3, predicted 3 -> 2/4;
    # building: tp 0 -> 0; class 5 only predicted -> 0; the rest: neither -> NaN.
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == pytest.approx(0.5)
    assert iou[2] == 0.0 and iou[5] == 0.0
    assert np.isnan(iou[[3, 4, 6, 18]]).all()
    miou = per_image_miou(confusion_matrix(gt, pred))
    assert miou == pytest.approx((2 / 3 + 0.5 + 0 + 0) / 4)
    scores = ConfusionMatrix()
    scores.add(gt, pred)
    expected = [np.nan if v is None else v for v in scores.scores().iou]
    np.testing.assert_allclose(iou, expected, equal_nan=True)
    assert np.isnan(per_image_miou(confusion_matrix(np.full((2, 2), IGNORE, np.uint8), pred[:, :2])))


def test_error_map_marks_wrong_labelled_pixels_and_leaves_void_neutral():
    gt = np.array([[0, 1, IGNORE], [2, 2, IGNORE]], np.uint8)
    pred = np.array([[0, 2, 0], [2, 255, 2]], np.uint8)
    assert error_map(gt, pred).tolist() == [[CORRECT, WRONG, VOID], [CORRECT, WRONG, VOID]]


def test_writer_ranks_images_and_a_cancelled_run_keeps_the_last_analysis(tmp_path):
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 1
    perfect, half = gt.copy(), gt.copy()
    half[:, 2:] = 0  # every sidewalk pixel predicted as road
    writer = AnalysisWriter(tmp_path / "errors", ["student"])
    writer.add("good", "good.png", gt, {"student": perfect})
    writer.add("bad", "bad.png", gt, {"student": half})
    analysis = writer.commit("folder:x", "val", {"student": [1, 2]})
    assert analysis.worst_first("student") == [1, 0]
    assert analysis.confusion_ranking("student", 1, 0) == [(1, 8)]
    assert analysis.confusion_ranking("student", 1, 1) == [(1, 8)]  # the diagonal: sidewalk missed
    loaded = ErrorAnalysis.load(tmp_path / "errors" / "index.npz")
    assert loaded.stems == ("good", "bad") and np.array_equal(loaded.confusion, analysis.confusion)
    assert np.array_equal(loaded.read_prediction("student", 1), half)
    second = AnalysisWriter(tmp_path / "errors", ["student"])
    second.add("good", "good.png", gt, {"student": half})
    second.abort()
    assert ErrorAnalysis.load(tmp_path / "errors" / "index.npz").stems == ("good", "bad")
    assert [p.name for p in (tmp_path / "errors").glob("run-*")] == [analysis.run_dir.name]


def test_project_analysis_agrees_with_the_evaluation_and_stops_on_request(tmp_path, tmp_path_factory):
    from murid_engine.data import open_dataset
    from murid_engine.inference import evaluate_model
    from murid_engine.model_store import project_model

    project = Project.open(copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p"))
    stopped = Control()
    stopped.stop()
    assert analyse_project(project, CollectingSink(), stopped) is None
    assert load_analysis(project) is None and not list(errors_dir(project).glob("run-*"))
    sink = CollectingSink()
    analysis = analyse_project(project, sink)
    val = open_dataset(project.config.data.target, project.config.data.val_split)
    assert analysis.models == ("source_only", "teacher", "student") and len(analysis) == len(val)
    progress = [e for e in sink.events if isinstance(e, Progress)]
    assert [e.iteration for e in progress] == list(range(1, len(val) + 1))
    # Summed over the images, the per-image counts are the evaluation's confusion matrix.
    for m in analysis.models:
        scores = evaluate_model(project_model(project, m).model, val)
        np.testing.assert_array_equal(analysis.counts(m).sum(axis=0), scores.confusion)
    assert analysis.stale_reason(project) is None
    reopened = load_analysis(project)
    assert reopened.stems == analysis.stems and reopened.worst_first("teacher") == analysis.worst_first("teacher")
    (project.checkpoints_dir / "teacher.pt").touch()
    assert "teacher" in reopened.stale_reason(project)
