"""Review view: sort, thresholds live preview, brush drag, undo/redo, fill, edits into the next round."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_helpers import review_window
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from murid_engine.curriculum.round_summary import read_round_summary
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import EDIT_NONE, Project

CAR = CLASS_NAMES.index("car")


@pytest.fixture()
def window(qtbot, tmp_path, tmp_path_factory):
    yield from review_window(qtbot, tmp_path, tmp_path_factory)


def _view_pos(canvas, x: float, y: float) -> QPoint:
    scene = canvas.overlay.mapToScene(QPointF(x, y))
    return canvas.left.mapFromScene(scene)


def _send(widget, kind, pos: QPoint, buttons) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), Qt.LeftButton, buttons,
                        Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def _pixel_at(canvas, x: float, y: float) -> tuple[int, int]:
    """The image pixel a mouse event at image point (x, y) lands on (after view rounding)."""
    p = canvas.overlay.mapFromScene(canvas.left.mapToScene(_view_pos(canvas, x, y)))
    return int(np.floor(p.x())), int(np.floor(p.y()))


def drag(qtbot, canvas, points: list[tuple[float, float]]) -> None:
    """A left-button drag through image pixels `points` (press, moves, release)."""
    vp = canvas.left.viewport()
    pos = [_view_pos(canvas, x, y) for x, y in points]
    _send(vp, QMouseEvent.MouseButtonPress, pos[0], Qt.LeftButton)
    for p in pos[1:]:
        _send(vp, QMouseEvent.MouseMove, p, Qt.LeftButton)
        qtbot.wait(5)
    _send(vp, QMouseEvent.MouseButtonRelease, pos[-1], Qt.NoButton)


def test_list_sorts_and_thresholds_preview_live(window, qtbot):
    review = window.review_view
    info = review.info
    stems = review.images.stems()
    # Full stems, elided in the middle when narrow, the image file as the tooltip.
    assert review.images.table.textElideMode() == Qt.ElideMiddle
    model = review.images.model
    first = model.index(0, 0)
    assert model.data(first) == stems[0] and stems[0] in info.images
    tip = model.data(first, Qt.ToolTipRole).splitlines()
    assert tip[0] == stems[0] and Path(tip[1]).is_file() and Path(tip[1]).stem.startswith(stems[0])
    by_conf = sorted(info.images, key=lambda s: info.images[s].mean_confidence)
    assert stems == by_conf  # least confident first
    review.images.sort.setCurrentIndex(1)  # least kept first
    kept = [info.images[s].kept_fraction for s in review.images.stems()]
    assert kept == sorted(kept)
    qtbot.mouseClick(review.images.table.horizontalHeader().viewport(), Qt.LeftButton,
                     pos=review.images.table.horizontalHeader().viewport().rect().center())

    panel = review.thresholds
    road = CLASS_NAMES.index("road")
    before = int(np.count_nonzero(review.canvas.labels == road))
    panel.sliders[road].setValue(0)  # keep every road pixel
    after = int(np.count_nonzero(review.canvas.labels == road))
    assert after == int(np.count_nonzero(review.pred == road)) >= before
    assert panel.kept[road].text().split("/")[0] == panel.kept[road].text().split("/")[1]
    assert "*" in panel.values[road].text()
    panel.portion.setValue(10)  # a lower portion keeps fewer pixels of the other classes
    assert panel.to_overrides().portion == pytest.approx(0.10)
    review.save_current()
    saved = Project.open(window.project.root).load_overrides()
    assert saved.thresholds == {"road": 0.0} and saved.portion == pytest.approx(0.10)
    with qtbot.waitSignal(window.runner.finished, timeout=30000):  # rewrite this round's labels
        qtbot.mouseClick(review.apply_button, Qt.LeftButton)
    info = read_round_summary(window.project.round_dir(review.round))
    assert info.thresholds["road"] == 0.0 and info.overrides == {"road": 0.0}
    assert info.kept_pixels["road"] == info.predicted_pixels["road"]
    qtbot.mouseClick(panel.reset_button, Qt.LeftButton)
    assert panel.overrides == {} and not panel.portion_touched
    building = CLASS_NAMES.index("building")
    qtbot.mouseClick(panel.names[building], Qt.LeftButton)  # its histogram and threshold line
    assert panel.selected == building and "building" in panel.hist_plot.plotItem.titleLabel.text
    assert np.array_equal(panel.hist_curve.getData()[1], panel.counts[building])
    panel.hist_line.setValue(0.5)  # dragging the line on the histogram sets the threshold
    panel.hist_line.sigPositionChangeFinished.emit(panel.hist_line)
    assert panel.overrides == {building: 0.5} and panel.sliders[building].value() == 128

    review.mode.setCurrentText("confidence")
    assert review.canvas.conf_item.isVisible()
    review.mode.setCurrentText("ground truth")
    assert review.canvas.gt is not None  # SynthCity's target-train has labels
    assert np.array_equal(review.canvas.conf_item.image, review.canvas.gt)
    review.mode.setCurrentText("compare")
    assert not review.canvas.right.isHidden()
    assert np.array_equal(review.canvas.gt_item.image, review.canvas.gt)
    for item in (review.canvas.overlay, review.canvas.gt_item):  # label maps: explicit table and levels
        assert item.image.dtype == np.uint8 and tuple(item.levels) == (0, 255)
        assert item.lut is not None and len(item.lut) == 256 and not item.autoDownsample
    review.opacity.setValue(20)
    assert review.canvas.overlay.opacity() == pytest.approx(0.2)
    review.legend.boxes[road].setChecked(False)  # hidden class: transparent in the lookup table
    assert review.canvas._lut[road][3] == 0


def test_brush_drag_undo_fill_and_the_next_round_trains_on_it(window, qtbot):
    from murid_engine.training.round_labels import HUMAN, training_maps

    review = window.review_view
    canvas = review.canvas
    stem = review.stem
    h, w = canvas.edit.shape
    review.paint_class.setCurrentIndex(CAR)
    qtbot.mouseClick(review.tool_buttons["brush"], Qt.LeftButton)
    assert canvas.tool == "brush"
    review.brush_size.setValue(2)
    drag(qtbot, canvas, [(5.5, h / 2), (15.5, h / 2), (25.5, h / 2)])
    painted = canvas.edit == CAR
    assert canvas.cursor.isVisible() and canvas.cursor.rect().width() == 5  # the brush's footprint
    x0, y = _pixel_at(canvas, 5.5, h / 2)
    x1, _ = _pixel_at(canvas, 25.5, h / 2)
    assert painted[y, x0:x1 + 1].all() and painted[y - 2:y + 3, x0 + 2].all()  # radius 2
    assert not painted[y + 3:].any() and painted.sum() >= (x1 - x0) * 5
    assert review.undo_button.isEnabled()
    qtbot.mouseClick(review.undo_button, Qt.LeftButton)  # undo the stroke
    assert (canvas.edit == EDIT_NONE).all()
    qtbot.mouseClick(review.redo_button, Qt.LeftButton)
    assert (canvas.edit == CAR).sum() == painted.sum()
    canvas.left.setFocus()
    qtbot.keyClick(canvas.left, Qt.Key_Z, Qt.ControlModifier)  # Ctrl+Z undoes
    assert (canvas.edit == EDIT_NONE).all()
    qtbot.keyClick(canvas.left, Qt.Key_Y, Qt.ControlModifier)  # Ctrl+Y redoes
    assert (canvas.edit == CAR).sum() == painted.sum()

    qtbot.keyClick(canvas.left, Qt.Key_E)  # the eraser's keyboard shortcut
    assert review.tool_buttons["eraser"].isChecked() and canvas.tool == "eraser"
    cars = int((canvas.edit == CAR).sum())
    drag(qtbot, canvas, [(24.5, h / 2), (25.5, h / 2)])
    x, y = _pixel_at(canvas, 24.5, h / 2)
    assert canvas.edit[y, x] == EDIT_NONE and (canvas.edit[y, 8:18] == CAR).all()
    assert 0 < (canvas.edit == CAR).sum() < cars
    region = canvas.edit == CAR

    review.actions_by_key["F"].trigger()  # fill-relabel a connected region with 'sky'
    review.paint_class.setCurrentIndex(CLASS_NAMES.index("sky"))
    shown = canvas.display()
    changed = canvas.fill_at(w - 1, 0)
    assert changed > 0 and (canvas.edit[0, w - 1] == CLASS_NAMES.index("sky"))
    assert shown[0, w - 1] != CLASS_NAMES.index("sky") or changed

    qtbot.mouseClick(review.save_button, Qt.LeftButton)
    project = Project.open(window.project.root)
    saved = project.load_edit(stem)
    assert saved is not None and ((saved == CAR) == region).all()

    # The next round: labelled by the teacher in the worker; the edit wins in its training maps.
    rounds = project.rounds()
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        qtbot.mouseClick(review.new_round_button, Qt.LeftButton)
    assert blocker.args[1] == rounds[-1] + 1, window.last_error
    nxt = blocker.args[1]
    (labels,) = training_maps(project, nxt, [stem])
    assert (labels.numpy()[region] == HUMAN + CAR).all()  # the user's class, marked
    assert review.round == nxt  # the view moved on to the new round
    qtbot.waitUntil(lambda: review.info is not None and review.info.round == nxt, timeout=30000)
