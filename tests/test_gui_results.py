"""Results view: one click distils and evaluates; the table, bars and matrix fill; export works."""

from __future__ import annotations

from gui_helpers import close_window, copy_of, make_window, trained
from PySide6.QtCore import Qt

from murid_engine.project import Project
from murid_engine.usecases import Evaluation


def test_distil_evaluate_and_export(qtbot, tmp_path, tmp_path_factory):
    folder = copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "project")
    for name in ("student.pt", "latest_student.pt"):  # a project whose student is not distilled yet
        (folder / "checkpoints" / name).unlink()
    (folder / "reports").mkdir(exist_ok=True)
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    window.show_view("results")
    view = window.results_view
    assert not view.run_button.isEnabled()  # until the reader has looked at the project's files
    qtbot.waitUntil(lambda: view.saved is not None, timeout=30000)
    assert view.table.rowCount() == 0 and not view.export_buttons["torchscript"].isEnabled()
    with qtbot.waitSignal(window.runner.finished, timeout=90000) as blocker:
        qtbot.mouseClick(view.run_button, Qt.LeftButton)
        assert not view.run_button.isEnabled() and view.stop_button.isEnabled()
    assert isinstance(blocker.args[1], Evaluation), window.last_error  # the typed record
    project = Project.open(folder)
    assert project.checkpoint_path("student").is_file()
    names = [view.table.item(r, 0).text() for r in range(view.table.rowCount())]
    assert names == ["source-only", "teacher", "student"]
    assert view.table.item(2, 2).text() not in ("", "—")  # student's mIoU
    assert "faster" in view.speed_label.text()
    assert view.report_button.isEnabled() and view.run_button.text().endswith("Evaluate again")
    assert len(view._bar_items) == 3
    assert view.matrix_model.currentData() == "student" and view.matrix_item.image is not None
    view.matrix_model.setCurrentIndex(1)  # the teacher's matrix
    assert view.matrix_item.image.shape == (19, 19)
    # The axes name the classes (not ids 0-18): full names down the side, short ones below.
    from murid_engine.labels import CLASS_NAMES
    left = [t for _, t in view.matrix.getAxis("left")._tickLevels[0]]
    bottom = sorted(sum(view.matrix.getAxis("bottom")._tickLevels, []))
    assert left == list(CLASS_NAMES) and [t for _, t in bottom[:3]] == ["road", "sidew.", "build."]
    assert len(bottom) == len(CLASS_NAMES)
    assert view.export_buttons["torchscript"].isEnabled()
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        qtbot.mouseClick(view.export_buttons["torchscript"], Qt.LeftButton)
    assert (folder / "exports" / "student.pt").is_file(), window.last_error
    assert "exported torchscript" in view.status.text()
    # Reopening the project shows the last comparison from reports/evaluation.json.
    assert window.open_project(folder)
    qtbot.waitUntil(lambda: view.table.rowCount() == 3, timeout=30000)
    close_window(window)


def test_distil_without_a_teacher_says_so(qtbot, tmp_path, tmp_path_factory):
    from gui_helpers import synth

    from murid_gui import tasks

    data = synth(tmp_path_factory.getbasetemp())
    folder = tmp_path / "untrained"
    tasks.create_project(folder, f"synthcity:{data}", f"synthcity:{data}", "smoke")
    window = make_window(qtbot, tmp_path)
    assert window.open_project(folder)
    qtbot.waitUntil(lambda: window.results_view.run_button.isEnabled(), timeout=30000)
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        qtbot.mouseClick(window.results_view.run_button, Qt.LeftButton)
    assert "no trained teacher" in window.last_error
    assert window.results_view.run_button.isEnabled()  # usable again
    close_window(window)
