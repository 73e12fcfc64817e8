"""Review view, "Regions to check": the queue loads off the GUI thread, keys act on regions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from gui_helpers import review_window, wait_for_image
from PySide6.QtCore import Qt

from murid_engine.project import EDIT_IGNORE, EDIT_NONE, Project
from murid_engine.regions import RoundRegions
from murid_engine.training.round_labels import HUMAN, training_maps


@pytest.fixture()
def window(qtbot, tmp_path, tmp_path_factory):
    yield from review_window(qtbot, tmp_path, tmp_path_factory)


def _queue(window, qtbot):
    review = window.review_view
    q = review.regions
    qtbot.waitUntil(lambda: q.regions is not None, timeout=10000)
    q.parentWidget().parentWidget().setCurrentWidget(q)  # the "Regions to check" tab
    return review, q


def test_queue_loads_off_the_gui_thread_worst_first(window, qtbot, monkeypatch):
    review, q = _queue(window, qtbot)
    opened_on = []
    real_open = RoundRegions.open
    monkeypatch.setattr(RoundRegions, "open", lambda folder: (opened_on.append(threading.current_thread()),
                                                              real_open(folder))[1])
    q.load(review.project, review.round)
    assert q.regions is None  # the rows arrive through a queued signal, not in this call
    qtbot.waitUntil(lambda: q.regions is not None, timeout=10000)
    assert [t.name for t in opened_on] == ["murid-reader"]  # the review's reader thread read them
    monkeypatch.undo()
    stored = RoundRegions.open(review.project.round_dir(review.round))
    assert q.model.rowCount() == len(stored.queue)
    scores = [float(q.model.data(q.model.index(i, 2))) for i in range(q.model.rowCount())]
    assert scores == sorted(scores, reverse=True)
    assert "0 pixels corrected or verified" in q.summary.text()


def test_keys_assign_accept_ignore_and_the_next_region_follows(window, qtbot):
    review, q = _queue(window, qtbot)
    stems = q.regions.stems
    # a row whose next row is on the same image, so that undo can be checked on one canvas
    k = next(i for i in range(len(q.regions.queue) - 2)
             if q.regions.entry(i)[0] == q.regions.entry(i + 1)[0] == q.regions.entry(i + 2)[0])
    q.table.setFocus()
    q.select(k)
    stem, region = q.regions.entry(k)
    wait_for_image(qtbot, review, stem)  # the image is read off the GUI thread, then outlined
    qtbot.waitUntil(lambda: q.outline.getData()[0] is not None and len(q.outline.getData()[0]) > 0, timeout=10000)
    assert review.stem == stem and stem in stems
    mask = q.region_map(stem) == region
    xs, ys = q.outline.getData()
    assert len(xs) > 0
    ys_in, xs_in = np.nonzero(mask)
    assert np.nanmin(xs) >= xs_in.min() and np.nanmax(xs) <= xs_in.max() + 1  # outlines the region
    (x0, x1), (y0, y1) = review.canvas.box.viewRange()
    assert x0 <= xs_in.min() and x1 >= xs_in.max() and y0 <= ys_in.min() and y1 >= ys_in.max()

    qtbot.keyClick(q.table, Qt.Key_3)  # train id 3: wall
    assert (review.canvas.edit[mask] == 3).all()
    assert q.current_row() == k + 1  # the next region follows
    stem1, region1 = q.regions.entry(k + 1)
    mask1 = q.region_map(stem1) == region1
    before_accept = review.canvas.edit.copy()
    qtbot.keyClick(q.table, Qt.Key_V)
    np.testing.assert_array_equal(review.canvas.edit[mask1], review.pred[mask1])
    assert q.current_row() == k + 2
    mask2 = q.region_map(stem) == q.regions.entry(k + 2)[1]
    qtbot.keyClick(q.table, Qt.Key_I)
    assert (review.canvas.edit[mask2] == EDIT_IGNORE).all()
    assert q.model.data(q.model.index(k, 4)) == "wall"
    assert q.model.data(q.model.index(k + 1, 4)) == "accept"
    verified = int(mask.sum() + mask1.sum())
    assert f"{verified} pixels corrected or verified" in q.summary.text()

    review.canvas.undo()  # undo the ignore, then the accept: the canvas's own history
    assert (review.canvas.edit[mask2] == EDIT_NONE).all()
    review.canvas.undo()
    np.testing.assert_array_equal(review.canvas.edit, before_accept)
    assert f"{int(mask.sum())} pixels corrected or verified" in q.summary.text()
    review.canvas.redo()
    np.testing.assert_array_equal(review.canvas.edit[mask1], review.pred[mask1])

    review.save_current()  # region actions are the project's edits: the next round trains on them
    project = Project.open(review.project.root)
    maps = training_maps(project, review.round, [stem])[0].numpy()
    assert (maps[mask] == HUMAN + 3).all()
    np.testing.assert_array_equal(maps[mask1], review.pred[mask1] + HUMAN)


def test_undo_reaches_a_region_action_after_the_queue_moved_to_another_image(window, qtbot):
    review, q = _queue(window, qtbot)
    k = next(i for i in range(len(q.regions.queue) - 1) if q.regions.entry(i)[0] != q.regions.entry(i + 1)[0])
    stem, region = q.regions.entry(k)
    other = q.regions.entry(k + 1)[0]
    q.table.setFocus()
    q.select(k)
    wait_for_image(qtbot, review, stem)
    mask = q.region_map(stem) == region
    before = review.canvas.edit.copy()
    qtbot.keyClick(q.table, Qt.Key_3)  # wall; the queue moves on to a region of another image
    wait_for_image(qtbot, review, other)
    assert review.undo_button.isEnabled()
    qtbot.keyClick(q.table, Qt.Key_Z, Qt.ControlModifier)
    wait_for_image(qtbot, review, stem)  # the undone action's image is shown again ...
    qtbot.waitUntil(lambda: q.model.data(q.model.index(k, 4)) == "", timeout=10000)
    np.testing.assert_array_equal(review.canvas.edit, before)  # ... without the action
    assert q.current_row() == k and "0 pixels corrected or verified" in q.summary.text()
    assert review.redo_button.isEnabled()
    review.redo()
    assert (review.canvas.edit[mask] == 3).all() and q.model.data(q.model.index(k, 4)) == "wall"
    review.save_current()
    assert (Project.open(review.project.root).load_edit(stem)[mask] == 3).all()
    # a stroke on another image and back: the history spans the images of the round
    review.show_image(other)
    wait_for_image(qtbot, review, other)
    review.undo()  # the redone action is again the last step: its image comes back
    wait_for_image(qtbot, review, stem)
    qtbot.waitUntil(lambda: (review.canvas.edit[mask] == before[mask]).all(), timeout=10000)


def test_shift_digit_assigns_classes_above_nine(window, qtbot):
    review, q = _queue(window, qtbot)
    window.activateWindow()
    q.table.setFocus()
    q.select(0)
    stem, region = q.regions.entry(0)
    wait_for_image(qtbot, review, stem)
    # The key is a window shortcut: it only fires once the window is active and the table has the
    # focus, and the region is outlined; under load these settle later, so wait for them.
    qtbot.waitUntil(lambda: q.table.hasFocus(), timeout=10000)
    qtbot.waitUntil(lambda: q.outline.getData()[0] is not None and len(q.outline.getData()[0]) > 0, timeout=10000)
    mask = q.region_map(stem) == region
    qtbot.keyClick(q.table, Qt.Key_3, Qt.ShiftModifier)  # 13: car
    assert (review.canvas.edit[mask] == 13).all()
