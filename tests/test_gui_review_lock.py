"""Review view on a project that another process holds: nothing is saved, and the view says who."""

from __future__ import annotations

import signal
import sys

import pytest
from gui_helpers import review_window, wait_for_image
from PySide6.QtCore import Qt
from smoke_runs import hold_lock_elsewhere

from murid_engine.labels import CLASS_NAMES
from murid_engine.regions.actions import Action
from murid_engine.project import Project

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks")


@pytest.fixture()
def window(qtbot, tmp_path, tmp_path_factory):
    yield from review_window(qtbot, tmp_path, tmp_path_factory)


def test_a_locked_project_is_read_only_in_review_and_says_who_holds_it(window, qtbot):
    review = window.review_view
    root = window.project.root
    holder = hold_lock_elsewhere(root)  # a `murid train` stand-in
    try:
        assert window.open_project(root)  # opened again while the other process writes
        window.show_view("review")
        wait_for_image(qtbot, review)
        assert "read-only" in review.status.text() and f"process {holder.pid}" in review.status.text()
        stem = review.stem
        # The editing tools are off while the other process writes: only panning is left.
        assert not review.tool_buttons["brush"].isEnabled() and not review.tool_buttons["fill"].isEnabled()
        assert review.tool_buttons["pan"].isEnabled() and not review.paint_class.isEnabled()
        review.set_tool("brush")  # its shortcut B
        assert review.canvas.tool == "pan"
        review.regions.select(0)
        assert review.regions.act(Action.ACCEPT) is False
        # An edit that reached the canvas anyway (the lock taken while the user painted) is refused
        # at the save, with the reason.
        review.paint_class.setCurrentIndex(CLASS_NAMES.index("sky"))
        assert review.canvas.fill_at(0, 0) > 0
        review.thresholds.thresholds_changed.emit(review.thresholds.thresholds())  # thresholds moved
        qtbot.mouseClick(review.save_button, Qt.LeftButton)  # no exception escapes the slot
        said = review.status.text()
        assert said.startswith(f"read-only: the edit of {stem} and the thresholds not saved; project")
        assert f"in use by process {holder.pid} (murid train --project" in said
        project = Project.open(root)
        assert not project.edit_path(stem).exists() and not list(project.edits_dir.glob("*.json"))
        other = review.images.stems()[-1]
        review.show_image(other)  # moving on tries again, still no crash
        wait_for_image(qtbot, review, other)
        assert other != stem and not project.edit_path(stem).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
