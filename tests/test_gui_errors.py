"""Errors view: worst image first, exact error maps, confusion-matrix drill-down, the real job and its cache."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import close_window, copy_of, make_window, trained
from PySide6.QtCore import QPoint, QPointF, Qt

from murid_engine.error_analysis import AnalysisWriter, errors_dir
from murid_engine.imageio import write_grey_png, write_rgb
from murid_engine.labels import IGNORE

ROAD, SIDEWALK, BUILDING, CAR = 0, 1, 2, 13
STEMS = ("frankfurt_000000_000294", "lindau_000001_000019", "munster_000002_000042")
GOOD, WORST, ROAD_AS_SIDEWALK = STEMS  # the student's per-image results, by construction


def _label() -> np.ndarray:
    gt = np.full((8, 16), ROAD, np.uint8)
    gt[:2] = IGNORE  # void: never scored, whatever is predicted there
    gt[2:4] = CAR
    gt[4:, :4] = SIDEWALK
    return gt


def _student(stem: str, gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    pred[:2] = BUILDING
    if stem == WORST:  # every car pixel missed, 4 road pixels as sidewalk: mIoU about 43
        pred[2:4] = BUILDING
        pred[7, 4:8] = SIDEWALK
    elif stem == ROAD_AS_SIDEWALK:  # 20 road pixels as sidewalk: mIoU about 68, the most road -> sidewalk
        pred[4:, 4:9] = SIDEWALK
    return pred


def _teacher(stem: str, gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    if stem == GOOD:  # the teacher's worst image is another one
        pred[2:4] = ROAD
    return pred


@pytest.fixture
def crafted(tmp_path):
    """A project whose val split and cached analysis are made by hand, so the answers are known."""
    from murid_gui import tasks

    data = tmp_path / "data"
    gt = _label()
    rng = np.random.default_rng(0)
    project = tasks.create_project(tmp_path / "project", f"folder:{data}", f"folder:{data}", "smoke")
    writer = AnalysisWriter(errors_dir(project), ["teacher", "student"])
    predictions = {}
    for stem in STEMS:
        image = data / "val" / "images" / f"{stem}.png"
        write_rgb(image, rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))
        write_grey_png(data / "val" / "labels" / f"{stem}.png", gt)
        predictions[stem] = {"teacher": _teacher(stem, gt), "student": _student(stem, gt)}
        writer.add(stem, image, gt, predictions[stem])
    writer.commit(f"folder:{data}", "val", {})
    return project.root, gt, predictions


def _comparison(folder, names):
    """What the Results view shows after an evaluation (the matrix's contents do not matter here)."""
    from murid_engine.bench.speed import Speed
    from murid_engine.comparison import Comparison, ModelResult
    from murid_engine.metrics import SegmentationScores

    scores = SegmentationScores.from_matrix(np.eye(19, dtype=np.int64), 3)
    speed = Speed(1.0, (16, 8), 1, 1, "cpu")
    models = [ModelResult(n, scores, speed, "tiny", folder / f"{n}.pt") for n in names]
    return Comparison(folder, "folder", "val", None, (16, 8), 1, "cpu", models)


def _open(qtbot, tmp_path, folder):
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    view = window.errors_view
    qtbot.waitUntil(lambda: view.analysis is not None, timeout=30000)
    return window, view


def _shown(qtbot, view, stem):
    qtbot.waitUntil(lambda: view.panels.shown is not None and view.panels.shown.stem == stem, timeout=30000)


def test_worst_image_first_and_its_error_map_marks_exactly_the_wrong_labelled_pixels(qtbot, tmp_path, crafted):
    folder, gt, predictions = crafted
    window, view = _open(qtbot, tmp_path, folder)
    window.show_view("errors")
    assert view.current_model() == "student"
    assert [view.list.item(r, 0).text() for r in range(3)] == [WORST, ROAD_AS_SIDEWALK, GOOD]
    name = view.list.item(0, 0)
    assert name.toolTip().endswith(f"{WORST}.png") and view.list.textElideMode() == Qt.ElideMiddle
    _shown(qtbot, view, WORST)
    pred = predictions[WORST]["student"]
    wrong = (pred != gt) & (gt != IGNORE)
    shown = view.panels.errors["student"].image
    assert shown.shape == gt.shape
    assert np.array_equal(shown == 1, wrong) and np.array_equal(shown == 2, gt == IGNORE)
    assert wrong.sum() == 36 and (shown == 1).sum() == 36  # 32 car pixels and 4 road pixels
    assert np.array_equal(view.panels.predictions["teacher"].image, predictions[WORST]["teacher"])
    assert "mIoU" in view.panels.titles["student"].text
    classes = [view.panels.table.item(r, 0).text() for r in range(view.panels.table.rowCount())]
    assert classes[:3] == ["road", "car", "sidewalk"] and "building" in classes  # largest in the label first
    car_row = classes.index("car")
    assert view.panels.table.item(car_row, 3).text() == "0.0"  # the student's car IoU on this image
    assert view.panels.table.item(car_row, 2).text() == "100.0"  # the teacher's
    view.rank_model.setCurrentIndex(view.rank_model.findData("teacher"))
    assert view.list.item(0, 0).text() == GOOD  # ranked by the teacher now
    close_window(window)


def test_a_confusion_cell_click_lists_the_image_where_it_happens_most(qtbot, tmp_path, crafted):
    folder, gt, _ = crafted
    window, view = _open(qtbot, tmp_path, folder)
    results = window.results_view
    results.show_results(_comparison(folder, ("teacher", "student")))
    window.show_view("results")
    qtbot.waitExposed(window)
    qtbot.wait(100)  # pyqtgraph settles its view range after the layout
    assert results.matrix_model.currentData() == "student"
    # Click the cell: ground truth road (row 0), predicted sidewalk (column 1).
    scene = results.matrix_item.mapToScene(QPointF(SIDEWALK + 0.5, ROAD + 0.5))
    pos = results.matrix.mapFromScene(scene)
    qtbot.mouseClick(results.matrix.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is view, timeout=5000)
    assert [view.list.item(r, 0).text() for r in range(view.list.rowCount())] == [ROAD_AS_SIDEWALK, WORST], (view.filter_label.text(), view.confusion)
    assert [view.list.item(r, 1).text() for r in range(2)] == ["20", "4"]
    assert view.filter_box.isVisibleTo(view) and "road predicted as sidewalk" in view.filter_label.text()
    _shown(qtbot, view, ROAD_AS_SIDEWALK)
    view.list.selectRow(1)
    _shown(qtbot, view, WORST)
    view.rank_model.setCurrentIndex(view.rank_model.findData("teacher"))  # the same cell, the teacher's
    assert view.list.rowCount() == 0 and "by the teacher: 0 images" in view.filter_label.text()
    view.show_all()
    assert view.list.rowCount() == 3 and not view.filter_box.isVisibleTo(view)
    close_window(window)


def test_analyse_the_trained_project_then_reopen_from_the_cache(qtbot, tmp_path, tmp_path_factory):
    folder = copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "project")
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    window.show_view("errors")
    view = window.errors_view
    qtbot.waitUntil(lambda: "No error analysis yet" in view.status.text(), timeout=30000)
    with qtbot.waitSignal(window.runner.finished, timeout=90000) as blocker:
        assert view.analyse()
        qtbot.mouseClick(view.cancel_button, Qt.LeftButton)  # obeyed before the first prediction
    assert blocker.args == ["error-analysis", None] and "stopped" in view.status.text()
    assert not (folder / "errors" / "index.npz").exists() and not list((folder / "errors").glob("run-*"))
    with qtbot.waitSignal(window.runner.finished, timeout=90000) as blocker:
        qtbot.mouseClick(view.analyse_button, Qt.LeftButton)
        assert view.cancel_button.isEnabled() and not view.analyse_button.isEnabled()
    assert blocker.args[0] == "error-analysis" and blocker.args[1] is not None, window.last_error
    assert view.progress.value() == view.progress.maximum()
    mious = [float(view.list.item(r, 3).text()) for r in range(view.list.rowCount())]  # the student's
    assert len(mious) == 6 and mious == sorted(mious)
    assert view.analysis.models == ("source_only", "teacher", "student")
    assert (folder / "errors" / "index.npz").is_file()
    assert window.open_project(folder)  # reopened: read from the cache, no job runs
    assert not window.runner.busy
    qtbot.waitUntil(lambda: view.analysis is not None, timeout=30000)
    assert not window.runner.busy and "out of date" not in view.status.text()
    assert [float(view.list.item(r, 3).text()) for r in range(view.list.rowCount())] == mious
    close_window(window)
