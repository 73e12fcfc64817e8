"""Review view on a project that another process holds: nothing is saved, and the view says who."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gui_helpers import review_window
from PySide6.QtCore import Qt

import murid_engine
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import Project

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks")


@pytest.fixture()
def window(qtbot, tmp_path, tmp_path_factory):
    yield from review_window(qtbot, tmp_path, tmp_path_factory)


def _hold_lock(root: Path) -> subprocess.Popen:
    """A `murid train` stand-in: another process that holds the project's lock until killed."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.argv = ["murid", "train", "--project", {str(root)!r}]
        from murid_engine.project_lock import hold_project_lock
        hold_project_lock({str(root)!r})
        print("locked", flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(murid_engine.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_project_is_read_only_in_review_and_says_who_holds_it(window, qtbot):
    review = window.review_view
    root = window.project.root
    holder = _hold_lock(root)
    try:
        assert window.open_project(root)  # opened again while the other process writes
        window.show_view("review")
        assert "read-only" in review.status.text() and f"process {holder.pid}" in review.status.text()
        stem = review.stem
        review.paint_class.setCurrentIndex(CLASS_NAMES.index("sky"))
        assert review.canvas.fill_at(0, 0) > 0
        review.thresholds.thresholds_changed.emit(review.thresholds.thresholds())  # thresholds moved
        qtbot.mouseClick(review.save_button, Qt.LeftButton)  # no exception escapes the slot
        said = review.status.text()
        assert said.startswith(f"read-only: the edit of {stem} and the thresholds not saved; project")
        assert f"in use by process {holder.pid} (murid train --project" in said
        project = Project.open(root)
        assert not project.edit_path(stem).exists() and not list(project.edits_dir.glob("*.json"))
        review.show_image(review.images.stems()[-1])  # moving on tries again, still no crash
        assert review.stem != stem and not project.edit_path(stem).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
