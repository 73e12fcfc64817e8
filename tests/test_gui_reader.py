"""Opening a project reads its files off the GUI thread: a 50,000-row metrics.jsonl does not stall it."""

from __future__ import annotations

import json
import threading
import time

from gui_helpers import close_window, make_window

from murid_engine import usecases
from murid_engine.project import Project
from murid_gui.bench import StallMonitor

ROWS = 50_000


def _long_run(folder):
    project = usecases.create_project(folder, "synthcity:/nowhere", "synthcity:/nowhere", "smoke")
    lines = [json.dumps({"kind": "losses", "stage": "adapt", "iteration": i, "time_s": i * 0.1,
                         "total": 1.0 / (1 + i), "seg": 0.5, "kl": 0.25}) for i in range(1, ROWS + 1)]
    lines.append(json.dumps({"kind": "eval", "stage": "adapt", "model": "teacher", "miou": 0.4321}))
    project.metrics_file.write_text("\n".join(lines) + "\n")
    return project


def test_metrics_are_read_off_the_gui_thread_and_arrive(qtbot, tmp_path, monkeypatch):
    project = _long_run(tmp_path / "p")
    readers = []
    real = Project.read_metrics
    monkeypatch.setattr(Project, "read_metrics",
                        lambda self, **kw: (readers.append(threading.current_thread()), real(self, **kw))[1])
    window = make_window(qtbot, tmp_path)
    view = window.train_view
    cpu = {}  # the GUI thread's own CPU time in each step (load on the machine does not count)
    shown = view._show_history

    def timed_show(history):
        t = time.thread_time()
        shown(history)
        cpu["show"] = time.thread_time() - t
    monkeypatch.setattr(view, "_show_history", timed_show)
    monitor = StallMonitor()
    monitor.start()
    t = time.thread_time()
    assert window.open_project(project.root)
    cpu["open"] = time.thread_time() - t
    assert view.history_pending and "reading the training history" in view.log.toPlainText()
    qtbot.waitUntil(lambda: not view.history_pending, timeout=60000)
    qtbot.wait(100)  # the curves' first paint
    monitor.stop()
    assert readers and all(r is not threading.main_thread() for r in readers)
    assert len(view.losses.series["total"].step) == ROWS and set(view.losses.series) == {"total", "seg", "kl"}
    assert "43.2" in view.score_label.text()
    print(f"GUI thread CPU ms: open {1000 * cpu['open']:.1f}, show {1000 * cpu['show']:.1f}; "
          f"event-loop stalls {monitor.summary()}")
    # Opening reads nothing (under 50 ms of GUI work); drawing the 3 x 50,000 points that arrive
    # measured 40-56 ms on the loaded 2-core machine: bounded here well below a synchronous read.
    assert cpu["open"] < 0.05 and cpu["show"] < 0.15
    close_window(window)


def test_a_newer_project_makes_the_older_read_stale(qtbot, tmp_path):
    first = _long_run(tmp_path / "first")
    second = usecases.create_project(tmp_path / "second", "synthcity:/d", "synthcity:/d", "smoke")
    window = make_window(qtbot, tmp_path)
    view = window.train_view
    assert window.open_project(first.root) and window.open_project(second.root)
    qtbot.waitUntil(lambda: not view.history_pending, timeout=60000)
    view.reader.wait_idle()
    qtbot.wait(50)
    assert view.losses.series == {}  # the first project's 50,000 rows never reached the view
    close_window(window)


def test_the_loss_plot_reuses_its_curves_and_its_legend_names_what_is_shown(qtbot):
    from murid_gui.loss_plot import MAX_DRAWN, LossHistory, LossPlot

    def history(names, rows):
        h = LossHistory()
        for i in range(1, rows + 1):
            h.add("adapt", i, 0.1 * i, {n: 1.0 / i for n in names})
        return h

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_history(history(("total", "seg"), 3 * MAX_DRAWN))
    first = dict(plot.curves)
    legend = lambda: sorted(label.text for _, label in plot.legend.items)  # noqa: E731
    assert legend() == ["seg", "total"]
    x, _ = first["total"][1].getData()
    assert len(x) <= MAX_DRAWN + 1 and x[-1] == 3 * MAX_DRAWN  # every k-th point, and the last
    plot.clear()  # another project: the same names reuse the curves, others leave the legend
    plot.set_history(history(("total", "kl"), 10))
    assert plot.curves["total"] is first["total"] and legend() == ["kl", "total"]
    spare = first["seg"][1].getData()[0]
    assert spare is None or len(spare) == 0  # the spare curve shows nothing


def test_a_new_plot_makes_its_curves_ahead_and_a_first_history_uses_them(qtbot):
    from murid_gui.loss_plot import PREMADE, LossHistory, LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    qtbot.waitUntil(lambda: len(plot._blank) == 2 * PREMADE, timeout=5000)  # one per event-loop turn
    made = list(plot.plot.listDataItems())
    history = LossHistory()
    history.add("adapt", 1, 0.1, {"total": 1.0, "kl": 0.5})
    plot.set_history(history)
    assert plot.plot.listDataItems() == made  # no curve made now
    assert len(plot._blank) == 2 * PREMADE - 4
    assert sorted(label.text for _, label in plot.legend.items) == ["kl", "total"]
    raw, smooth = plot.curves["total"]
    assert smooth.opts["pen"].width() == 2 and raw.opts["pen"].color().alpha() == 60
    assert list(smooth.getData()[0]) == [1]


def test_live_losses_are_drawn_at_most_every_redraw_interval_and_none_is_lost(qtbot):
    from murid_gui.loss_plot import REDRAW_S, LossPlot

    class Loss:
        stage = "adapt"

        def __init__(self, i: int) -> None:
            self.iteration, self.values = i, {"total": 1.0 / i}

    plot = LossPlot()
    qtbot.addWidget(plot)
    drawn = lambda: list(plot.curves["total"][1].getData()[0])  # noqa: E731
    plot.add_batch([Loss(1)])  # the first batch is drawn at once
    assert drawn() == [1]
    plot.add_batch([Loss(2)])
    plot.add_batch([Loss(3), Loss(4)])  # within REDRAW_S: waits, drawn together
    assert drawn() == [1] and plot._redraw_timer.isActive()
    qtbot.waitUntil(lambda: drawn() == [1, 2, 3, 4], timeout=int(4000 * REDRAW_S))
    plot.clear()  # a redraw pending for a history that is gone draws nothing and raises nothing
    plot.add_batch([Loss(5)])
    qtbot.wait(int(1500 * REDRAW_S))
    assert "total" in plot.series


def test_the_plot_draws_arrays_made_off_the_gui_thread(qtbot, monkeypatch):
    from murid_gui.loss_plot import MAX_DRAWN, LossHistory, LossPlot, _Series

    made_on = []
    real = _Series._decimate
    monkeypatch.setattr(_Series, "_decimate",
                        lambda self, by_time: (made_on.append(threading.current_thread()), real(self, by_time))[1])
    history = LossHistory()
    for i in range(1, ROWS + 1):
        history.add("adapt", i, 0.1 * i, {"total": 1.0 / i})
    reader = threading.Thread(target=history.prepare)  # as read_history does on the reader thread
    reader.start()
    reader.join()
    assert made_on and threading.main_thread() not in made_on
    plot = LossPlot()
    qtbot.addWidget(plot)
    made_on.clear()
    plot.set_history(history)
    assert made_on == []  # the GUI thread only handed the prepared arrays to the curves
    x, y = plot.curves["total"][1].getData()
    assert len(x) <= MAX_DRAWN + 1 and x[-1] == ROWS and len(x) == len(y)
    plot.x_axis.setCurrentIndex(1)  # time on x: prepared too
    assert made_on == [] and plot.curves["total"][1].getData()[0][-1] == 0.1 * ROWS

    class Loss:
        stage, iteration, values = "adapt", ROWS + 1, {"total": 0.5}
    plot.x_axis.setCurrentIndex(0)
    plot.add_batch([Loss()])  # a live loss: the series grew, its arrays are made again
    assert made_on and plot.curves["total"][1].getData()[0][-1] == ROWS + 1


def test_the_reader_frees_what_it_is_handed_on_its_own_thread(qtbot):
    from murid_gui.reader import Reader

    freed_on = []

    class Big:
        def __del__(self):
            freed_on.append(threading.current_thread())
    reader = Reader()
    holder = [Big()]
    reader.release(holder)
    qtbot.waitUntil(lambda: bool(freed_on), timeout=5000)
    assert holder == [] and freed_on[0].name == "murid-reader"
    reader.shutdown()


def test_reading_a_long_history_pauses_between_chunks(tmp_path, monkeypatch):
    from murid_engine.project import METRICS_CHUNK
    from murid_gui import reader, train_view

    project = _long_run(tmp_path / "p")
    pauses = []
    monkeypatch.setattr(reader, "yield_gil", lambda: pauses.append(1))  # paced()'s pauses
    monkeypatch.setattr(train_view, "yield_gil", lambda: pauses.append(1))  # read_metrics's
    history = train_view.read_history(project)
    assert len(history.losses.series["total"].raw) == ROWS and history.evals[0].miou == 0.4321
    # The file's lines, the rows made records, the records made series: each paced by chunks.
    assert len(pauses) >= 3 * (ROWS // METRICS_CHUNK)
