"""Shared pieces of the GUI tests: offscreen Qt, one thread, a trained smoke project per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from smoke_runs import SYNTH_ARGS, murid  # noqa: E402

_CACHE: dict[str, Path] = {}


def synth(base: Path) -> Path:
    if "synth" not in _CACHE:
        out = base / "synth"
        result = murid("synth", out, *SYNTH_ARGS)
        assert result.code == 0, result.err
        _CACHE["synth"] = out
    return _CACHE["synth"]


def trained(base: Path) -> Path:
    """A smoke project trained through every stage (teacher, two rounds, student)."""
    if "trained" not in _CACHE:
        data = synth(base)
        project = base / "trained"
        result = murid("train", "--project", project, "--source", f"synthcity:{data}",
                       "--target", f"synthcity:{data}", "--preset", "smoke")
        assert result.code == 0, result.err
        _CACHE["trained"] = project
    return _CACHE["trained"]


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest)
    return dest


def make_window(qtbot, tmp_path: Path):
    """A MainWindow with its own settings file (recent projects do not leak between tests)."""
    from PySide6.QtCore import QSettings

    from murid_gui.app import make_app
    from murid_gui.main_window import MainWindow

    make_app()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    return window


def close_window(window) -> None:
    window.runner.shutdown()


def review_window(qtbot, tmp_path: Path, tmp_path_factory):
    """A shown main window on a copy of the trained smoke project, in the Review view; closed after."""
    project = copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "project")
    w = make_window(qtbot, tmp_path)
    w.show()
    assert w.open_project(project)
    w.show_view("review")
    qtbot.waitExposed(w)
    wait_for_image(qtbot, w.review_view)
    yield w
    close_window(w)


def wait_for_image(qtbot, review, stem: str | None = None) -> None:
    """Until the Review view shows an image (`stem`, when given): it is read off the GUI thread."""
    qtbot.waitUntil(lambda: review.pred is not None and (stem is None or review.stem == stem), timeout=30000)
