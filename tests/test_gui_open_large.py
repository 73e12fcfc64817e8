"""Opening a project with a long history and a Cityscapes-sized round reads nothing on the GUI thread.

The project: 50,000 metrics rows and a 3,000-image round. Every file read (Python's open,
Path.read_text/read_bytes, and the engine's image reader) is recorded with its thread; only the
project file (project.json, a few hundred bytes) may be read on the GUI thread. The event loop's
stalls are printed; the 50 ms figure itself is `murid bench gui`'s (a loaded CI machine would
make a time bound here flaky).
"""

from __future__ import annotations

import builtins
import threading
from pathlib import Path

from gui_helpers import close_window, copy_of, make_window, trained

import murid_engine.imageio as imageio
from murid_engine.project import Project
from murid_gui.bench import StallMonitor
from murid_gui.bench_scenarios import IMAGES, ROWS, grow_project, opened


class ReadLog:
    """Which files each thread reads (recorded, then passed through)."""

    def __init__(self, monkeypatch) -> None:
        self.gui: list[str] = []
        main = threading.main_thread()

        def recording(fn, name):
            def read(*args, **kwargs):
                if threading.current_thread() is main:
                    self.gui.append(f"{name} {args[0] if args else ''}")
                return fn(*args, **kwargs)
            return read

        for owner, name in ((builtins, "open"), (imageio, "_read_bytes"), (Path, "read_text"), (Path, "read_bytes")):
            monkeypatch.setattr(owner, name, recording(getattr(owner, name), name))

    def stop(self, monkeypatch) -> None:
        monkeypatch.undo()


def _record_threads(monkeypatch) -> list[tuple[str, threading.Thread]]:
    """Which thread makes the loss plot's arrays and the image list's number columns."""
    from murid_gui import image_list, round_data
    from murid_gui.loss_plot import _Series

    made_on: list[tuple[str, threading.Thread]] = []
    decimate, columns = _Series._decimate, image_list.summary_columns
    monkeypatch.setattr(_Series, "_decimate", lambda self, by_time: (
        made_on.append(("plot", threading.current_thread())), decimate(self, by_time))[1])

    def recorded_columns(images):
        if images:  # an emptied list (the previous round cleared) makes no columns worth noting
            made_on.append(("columns", threading.current_thread()))
        return columns(images)
    monkeypatch.setattr(image_list, "summary_columns", recorded_columns)
    monkeypatch.setattr(round_data, "summary_columns", recorded_columns)
    return made_on


def test_opening_a_large_project_reads_nothing_on_the_gui_thread(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    project = Project.open(copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p"))
    grow_project(project.root)
    window = make_window(qtbot, tmp_path)
    window.show_view("review")
    qtbot.waitExposed(window)
    review, train, results = window.review_view, window.train_view, window.results_view
    monitor = StallMonitor()
    monitor.start()
    made_on = _record_threads(monkeypatch)
    reads = ReadLog(monkeypatch)
    assert window.open_project(project.root)
    qtbot.waitUntil(lambda: opened(window), timeout=120000)
    qtbot.wait(100)  # the first paint of what arrived
    reads.stop(monkeypatch)
    monitor.stop()
    print(f"event-loop stalls while opening: {monitor.summary()}")
    assert review.images.model.rowCount() == IMAGES and len(train.losses.series["total"].step) >= ROWS
    assert review.stem in review.info.images and review.canvas.image is not None
    allowed = [r for r in reads.gui if r.endswith("project.json")]
    assert reads.gui == allowed, reads.gui  # every other read happened on a reader thread
    assert monitor.summary()["ticks"] > 10
    # The plot's decimated arrays and the image list's columns were made off the GUI thread too.
    assert {"plot", "columns"} <= {what for what, _ in made_on}
    assert all(thread is not threading.main_thread() for _, thread in made_on), made_on
    close_window(window)
