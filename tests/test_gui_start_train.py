"""Start view (new project, open, recent, demo) and Train view (live run, previews, losses), theme."""

from __future__ import annotations

import numpy as np
from gui_helpers import close_window, make_window, synth, trained
from PySide6.QtCore import Qt

from murid_engine.jobs import Preview
from murid_engine.project import Project
from murid_gui.train_view import RUNNING_NOTE


def test_new_project_open_and_recent(qtbot, tmp_path, tmp_path_factory):
    data = synth(tmp_path_factory.getbasetemp())
    window = make_window(qtbot, tmp_path)
    start = window.start_view
    assert not window.tabs.isTabEnabled(1)  # no project: only the start view
    start.folder.setText(str(tmp_path / "new"))
    start.source.setText(f"synthcity:{data}")
    start.target.setText("")  # a mistake: a clear message, nothing created
    with qtbot.waitSignal(window.runner.finished, timeout=30000):  # created on the worker
        qtbot.mouseClick(start.create_button, Qt.LeftButton)
    assert "target" in window.last_error and not (tmp_path / "new").exists()
    start.target.setText(f"synthcity:{data}")
    start.preset.setCurrentText("smoke")
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        qtbot.mouseClick(start.create_button, Qt.LeftButton)
    assert Project.is_project(tmp_path / "new")
    assert window.project.config.data.source == f"synthcity:{data}"
    assert window.tabs.currentIndex() == 1 and window.tabs.isTabEnabled(2)
    # Recent projects live in QSettings: a new window lists the project and opens it from there.
    other = trained(tmp_path_factory.getbasetemp())
    assert window.open_project(other)
    close_window(window)
    window2 = make_window(qtbot, tmp_path)
    items = [window2.start_view.recent_list.item(i).data(Qt.UserRole)
             for i in range(window2.start_view.recent_list.count())]
    assert items == [str(other.resolve()), str((tmp_path / "new").resolve())]
    window2.start_view.recent_list.setCurrentRow(1)
    qtbot.mouseClick(window2.start_view.open_recent_button, Qt.LeftButton)
    assert window2.project.root.resolve() == (tmp_path / "new").resolve()
    close_window(window2)


def test_demo_generates_and_opens_a_project(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    window.demo_synth = {"n_source": 4, "n_target": 3, "n_val": 2, "width": 64, "height": 32}
    window.start_view.demo_folder.setText(str(tmp_path / "demo"))
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        qtbot.mouseClick(window.start_view.demo_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.project is not None, timeout=5000)
    assert window.project.root == tmp_path / "demo" / "project"
    assert window.project.config.data.target.startswith("synthcity:")
    assert window.tabs.currentIndex() == 1
    close_window(window)


def test_train_view_live_run(qtbot, tmp_path, tmp_path_factory):
    data = synth(tmp_path_factory.getbasetemp())
    from murid_gui import tasks

    folder = tmp_path / "p"
    tasks.create_project(folder, f"synthcity:{data}", f"synthcity:{data}", "smoke")
    p = Project.open(folder)
    cfg = p.config
    cfg.preview_every = 1
    cfg.distill.enabled = False
    p.save_config(cfg)
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    view = window.train_view
    qtbot.waitUntil(lambda: view.state is not None, timeout=30000)  # read off the GUI thread
    assert view.start_button.text() == "▶ Start training" and not view.state.has_run
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        qtbot.mouseClick(view.start_button, Qt.LeftButton)
        assert not view.start_button.isEnabled() and view.stop_button.isEnabled()
        assert view.next_label.text() == RUNNING_NOTE  # not the state's stale "Start training …"
    assert blocker.args == ["train", True], window.last_error
    qtbot.waitUntil(lambda: view.state.finished, timeout=30000)  # finished: nothing left to start
    assert view.start_button.text() == "✓ Training finished" and not view.start_button.isEnabled()
    assert "finished" in view.next_label.text()
    assert not view.stop_button.isEnabled()
    assert view.stage_bar.value() == view.stage_bar.maximum()
    assert view.round_label.text() == "round 2/2"
    assert "mIoU" in view.score_label.text()
    strip = view.previews
    assert len(strip.history) >= 2 and isinstance(strip.shown, Preview)
    assert strip.shown is strip.history[-1]
    strip.slider.setValue(0)  # back to the first preview
    assert strip.shown is strip.history[0] and not strip.follow.isChecked()
    qtbot.mouseClick(strip.follow, Qt.LeftButton)  # follow live again
    assert strip.shown is strip.history[-1]
    item = strip._items[1][0]  # a prediction: uint8 through an explicit table, levels (0, 255)
    assert item.image.dtype == np.uint8 and tuple(item.levels) == (0, 255)
    assert item.lut is not None and not item.autoDownsample
    plot = view.losses
    assert "total" in plot.series and len(plot.series["total"].raw) >= 6
    x_iter = plot.curves["total"][1].getData()[0].copy()
    plot.x_axis.setCurrentIndex(1)  # time on the x-axis
    x_time = plot.curves["total"][1].getData()[0]
    assert np.all(np.diff(x_iter) > 0) and not np.array_equal(x_iter, x_time)
    assert window.review_view.round == 2  # the rounds the run wrote can be reviewed
    close_window(window)


def test_theme_switch(qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    window = make_window(qtbot, tmp_path)
    window.theme_actions["light"].trigger()
    assert QApplication.instance().property("murid_theme") == "light"
    assert window.settings.value("theme") == "light"
    window.theme_actions["dark"].trigger()
    assert QApplication.instance().property("murid_theme") == "dark"
    assert QApplication.instance().styleSheet()
    close_window(window)


def test_screenshot_command(tmp_path, tmp_path_factory, qtbot, monkeypatch):
    from murid_gui.app import main

    project = trained(tmp_path_factory.getbasetemp())
    out = tmp_path / "review.png"
    monkeypatch.setenv("MURID_SETTINGS", str(tmp_path / "settings.ini"))  # not the user's settings
    assert main(["--project", str(project), "--view", "review", "--screenshot", str(out),
                 "--size", "1024x640", "--theme", "dark"]) == 0
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert (image.width(), image.height()) == (1024, 640)
    assert "trained" in (tmp_path / "settings.ini").read_text()  # recent projects went there
    assert main(["--project", str(tmp_path / "nothing"), "--screenshot", str(out)]) == 2
