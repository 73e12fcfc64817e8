"""Long jobs in the app: real progress, one Cancel for all, a finished project, a stale student."""

from __future__ import annotations

import os

from gui_helpers import close_window, copy_of, make_window, trained, wait_for_image
from PySide6.QtCore import Qt

from murid_engine.jobs import Progress
from murid_engine.project import Project


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cancelling_pseudo_labelling_leaves_the_previous_round_intact(qtbot, tmp_path, tmp_path_factory):
    project = copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p")
    window = make_window(qtbot, tmp_path)
    assert window.open_project(project)
    review = window.review_view
    wait_for_image(qtbot, review)
    rounds = Project.open(project).rounds()
    last = Project.open(project).round_dir(rounds[-1])
    before = _files(last)
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        qtbot.mouseClick(review.new_round_button, Qt.LeftButton)
        assert window.cancel_button.isVisible() and window.busy_bar.isVisible()
        qtbot.mouseClick(window.cancel_button, Qt.LeftButton)  # before its first image is written
    assert blocker.args == ["pseudo", None], window.last_error
    assert "stopped" in review.status.text() and not window.cancel_button.isVisible()
    assert Project.open(project).rounds() == rounds and not Project.open(project).round_dir(rounds[-1] + 1).exists()
    assert _files(last) == before

    progress = []  # uncancelled: a determinate bar that follows the images

    def record(event) -> None:  # returns None: PySide6 6.12 mis-counts a bool a slot returns
        if isinstance(event, Progress):
            progress.append((event.iteration, event.total, window.busy_bar.maximum()))
    window.runner.event.connect(record)
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        qtbot.mouseClick(review.new_round_button, Qt.LeftButton)
    assert blocker.args == ["pseudo", rounds[-1] + 1], window.last_error
    assert progress and progress[-1][0] == progress[-1][1] == progress[-1][2] > 1
    close_window(window)


def test_a_finished_project_shows_it_and_what_comes_next(qtbot, tmp_path, tmp_path_factory):
    project = trained(tmp_path_factory.getbasetemp())
    window = make_window(qtbot, tmp_path)
    assert window.open_project(project)
    view = window.train_view
    assert not view.start_button.isEnabled()  # nothing to start until the reader has looked
    qtbot.waitUntil(lambda: view.state is not None, timeout=30000)
    assert view.state.finished and view.start_button.text() == "✓ Training finished"
    assert not view.start_button.isEnabled()
    assert view.stage_bar.value() == view.stage_bar.maximum() == 1
    assert view.round_bar.value() == view.round_bar.maximum() == view.state.rounds > 0
    assert "finished" in view.next_label.text() and "Review" in view.next_label.text()
    close_window(window)


def test_a_student_older_than_its_teacher_is_stale_and_re_distils_in_one_click(qtbot, tmp_path,
                                                                                tmp_path_factory):
    project = copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p")
    window = make_window(qtbot, tmp_path)
    assert window.open_project(project)
    results = window.results_view
    qtbot.waitUntil(lambda: results.saved is not None, timeout=30000)
    assert not results.student_stale and results.stale_box.isHidden()

    teacher = Project.open(project).checkpoint_path("teacher")
    student = Project.open(project).checkpoint_path("student")
    earlier = teacher.stat().st_mtime - 60  # distilled before the teacher trained on
    os.utime(student, (earlier, earlier))
    assert window.open_project(project)
    qtbot.waitUntil(lambda: results.saved is not None, timeout=30000)
    window.show_view("results")
    assert results.student_stale and results.stale_box.isVisible() and results.redistil_button.isEnabled()
    qtbot.waitUntil(lambda: window.train_view.state is not None, timeout=30000)
    assert "re-distil" in window.train_view.next_label.text()
    with qtbot.waitSignal(window.runner.finished, timeout=120000) as blocker:
        qtbot.mouseClick(results.redistil_button, Qt.LeftButton)
    assert blocker.args[0] == "distil-evaluate" and blocker.args[1] is not None, window.last_error
    assert student.stat().st_mtime_ns > teacher.stat().st_mtime_ns  # a new student, from this teacher
    qtbot.waitUntil(lambda: not results.student_stale, timeout=30000)
    assert results.stale_box.isHidden()
    rows = [results.table.item(r, 0).text() for r in range(results.table.rowCount())]
    assert "student" in rows and not any("stale" in r for r in rows)
    close_window(window)
