"""The main window: four views in tabs over one project and one worker thread.

It wires view requests to engine jobs (``tasks``) run by the ``JobRunner`` and routes the
worker's signals back to the views. It owns no training logic and no view's details.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QApplication, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton,
                               QTabWidget)

from murid_engine.errors import UserError
from murid_engine.jobs import Message, Progress, StageFinished, StageStarted
from murid_engine.project import Project
from murid_engine.project_lock import held_by_other

from . import tasks
from .error_browser import ErrorBrowser
from .results_view import ResultsView
from .review_view import ReviewView
from .start_view import RecentProjects, StartView
from .theme import apply_theme, current_theme, restyle_plots
from .predict_view import PredictView
from .reader import Reader
from .train_view import TrainView
from .worker import JobRunner

VIEWS = ("start", "train", "review", "results", "errors", "predict")  # the tabs, in order


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("MURID Studio")
        self.resize(1280, 800)
        self.settings = settings or QSettings("MURID", "MURID Studio")
        self.project: Project | None = None
        self.last_error: str | None = None
        self._job_failed = False  # the running job reported a failure (its result is None)
        self._dialog: QMessageBox | None = None
        self.demo_preset = "cpu-demo"
        self.demo_synth: dict | None = None  # SynthCity sizes (None: the generator's defaults)
        self.runner = JobRunner(self)
        self.reader = Reader(self)  # the views' reads of project files, off the GUI thread

        self.start_view = StartView(RecentProjects(self.settings))
        self.train_view = TrainView(reader=self.reader)
        self.review_view = ReviewView(self.runner, reader=self.reader)
        self.results_view = ResultsView(self.runner, reader=self.reader)
        self.predict_view = PredictView(self.runner)
        self.errors_view = ErrorBrowser(self.runner)
        self.tabs = QTabWidget()
        for view, name in ((self.start_view, "Start"), (self.train_view, "Train"),
                           (self.review_view, "Review"), (self.results_view, "Distil && evaluate"),
                           (self.errors_view, "Errors"), (self.predict_view, "Predict")):
            self.tabs.addTab(view, name)
        self.setCentralWidget(self.tabs)
        self.tabs.currentChanged.connect(self._on_tab)

        self.status_label = QLabel("Ready")
        # Every job's progress (busy until its first Progress event) and one Cancel for all jobs.
        self.busy_bar = QProgressBar()
        self.busy_bar.setMaximumWidth(200)
        self.busy_bar.setRange(0, 0)
        self.busy_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (training saves a checkpoint first)")
        self.cancel_button.clicked.connect(self.runner.stop)
        self.cancel_button.hide()
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.busy_bar)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self._menus()

        sv, tv = self.start_view, self.train_view
        sv.open_requested.connect(self.open_project)
        sv.create_requested.connect(self.create_project)
        sv.demo_requested.connect(self.start_demo)
        tv.start_requested.connect(self.start_training)
        tv.pause_requested.connect(self.runner.pause)
        tv.resume_requested.connect(self.runner.resume)
        tv.stop_requested.connect(self.runner.stop)
        self.results_view.confusion_cell_clicked.connect(self.show_confusion)
        r = self.runner
        r.event.connect(self._on_event)
        r.losses.connect(tv.losses.add_batch)
        r.failed.connect(self._on_failed)
        r.finished.connect(self._on_finished)
        r.busy_changed.connect(self._on_busy)
        r.paused_changed.connect(tv.set_paused)
        self._set_project_views_enabled(False)

    # ------------------------------------------------------------------ menus
    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, key, slot in (("&Open project…", QKeySequence.Open, self.start_view._browse_open),
                                ("&Quit", QKeySequence.Quit, self.close)):
            action = QAction(text, self)
            action.setShortcut(key)
            action.triggered.connect(slot)
            file_menu.addAction(action)
        view_menu = self.menuBar().addMenu("&View")
        group = QActionGroup(self)
        self.theme_actions = {}
        for theme in ("dark", "light"):
            action = QAction(f"{theme.capitalize()} theme", self, checkable=True)
            action.setChecked(theme == current_theme())
            action.triggered.connect(lambda _=False, t=theme: self.set_theme(t))
            group.addAction(action)
            view_menu.addAction(action)
            self.theme_actions[theme] = action

    def set_theme(self, theme: str) -> None:
        apply_theme(QApplication.instance(), theme)
        self.settings.setValue("theme", theme)
        self.theme_actions[theme].setChecked(True)
        restyle_plots(self)

    # ------------------------------------------------------------------ projects
    def show_view(self, name: str) -> None:
        self.tabs.setCurrentIndex(VIEWS.index(name))

    def show_confusion(self, model: str, gt: int, pred: int) -> None:
        """A confusion-matrix cell clicked: the Errors view lists the images where it happens most."""
        self.errors_view.show_confusion(model, gt, pred)
        self.show_view("errors")

    def open_project(self, folder: str | Path) -> bool:
        if self.runner.busy:
            self.report_error("a job is running: stop it before opening another project")
            return False
        try:
            project = Project.open(Path(folder))
            self.project = project
            self.train_view.set_project(project)
            self.predict_view.set_project(project)
            self.review_view.set_project(project)
            self.results_view.set_project(project)
            self.errors_view.set_project(project)
        except (UserError, OSError, ValueError) as exc:
            self.report_error(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a damaged file must not take the app down
            self.report_error(f"could not open {folder}: {type(exc).__name__}: {exc}")
            return False
        self.start_view.recent.add(project.root)
        self.start_view.refresh_recent()
        self.setWindowTitle(f"MURID Studio — {project.root.name}")
        self._set_project_views_enabled(True)
        self.status_label.setText(f"opened {project.root}")
        if (holder := held_by_other(project.root)) is not None:  # edits are refused meanwhile
            self.status_label.setText(f"opened {project.root} read-only: {holder.describe()} is "
                                      "writing into it")
        if self.tabs.currentIndex() == 0:
            self.show_view("train")
        return True

    def create_project(self, folder: str, source: str, target: str, preset: str) -> bool:
        """Create the project on the worker (it checks the datasets); it opens when created."""
        if not folder:
            self.report_error("choose a folder for the new project")
            return False
        if self.runner.busy:
            self.report_error(f"the {self.runner.current} job is running; wait for it or stop it first")
            return False
        self.status_label.setText(f"creating the project in {folder} …")
        return self.runner.start("create", tasks.create_job(Path(folder), source, target, preset))

    def start_demo(self, folder: str) -> bool:
        if not folder:
            self.report_error("choose a folder for the demo")
            return False
        self.status_label.setText(f"generating the SynthCity demo in {folder} …")
        return self.runner.start("demo", tasks.demo_job(Path(folder), self.demo_preset, self.demo_synth))

    def start_training(self) -> bool:
        if self.project is None:
            self.report_error("open or create a project first")
            return False
        if self.runner.busy:
            self.report_error(f"the {self.runner.current} job is running; wait for it or stop it first")
            return False
        self.review_view.save_current()  # the run reads the edits and thresholds
        self.train_view.job_started()
        return self.runner.start("train", tasks.train_job(self.project.root))

    # ------------------------------------------------------------------ worker signals
    def _on_event(self, event) -> None:
        name = self.runner.current
        if isinstance(event, Progress):
            self.busy_bar.setRange(0, max(event.total, 1))
            self.busy_bar.setValue(event.iteration)
            self.busy_bar.setFormat(f"{event.stage} %v/%m")
        elif isinstance(event, (StageStarted, StageFinished)):
            self.busy_bar.setRange(0, 0)  # busy until the stage's first progress
        if name == "train":
            self.train_view.on_event(event)
            if type(event).__name__ == "RoundReady":
                self.review_view.round_ready(event.round)
        elif name in ("distil-evaluate", "export"):
            self.results_view.on_event(event)
            if type(event).__name__ in ("Losses", "Preview", "Progress"):
                self.train_view.on_event(event)
        elif name in ("pseudo", "relabel"):
            self.review_view.on_event(event)
        if isinstance(event, Message):
            self.status_label.setText(event.text)
        elif isinstance(event, StageStarted):
            self.status_label.setText(f"{event.stage}: started")

    def _on_failed(self, name: str, message: str, detail: str) -> None:
        self._job_failed = True
        self.report_error(f"The {name} job failed: {message}", detail)

    def _on_finished(self, name: str, result) -> None:
        if name in ("demo", "create") and isinstance(result, str):
            if self.open_project(result):
                self.show_view("train")
        elif name == "demo" and not self._job_failed:
            self.status_label.setText("demo generation cancelled; what it had written was removed")
        elif name == "train":
            if result is not None:  # None: it failed, and the status shows why
                self.status_label.setText("training finished" if result else
                                          "training stopped; a checkpoint was saved")
            if self.project is not None:
                self.review_view.set_project(self.project)
                self.train_view.refresh_state(self.project)
                self.results_view.set_project(self.project)  # a new teacher may make the student stale
        elif name in ("distil-evaluate", "export"):
            self.results_view.job_finished(name, result)
        elif name in ("pseudo", "relabel"):
            self.review_view.job_finished(name, result)
        elif not self._job_failed:  # predict, errors, ...: their view shows the result; "started" would linger
            self.status_label.setText(f"{name}: {'finished' if result is not None else 'cancelled'}")

    def _on_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setFormat("%p%")
        if busy:
            self._job_failed = False
        self.train_view.set_busy(busy)  # one job at a time
        self.train_view.set_running(busy and self.runner.current == "train")
        self.start_view.set_busy(busy)
        self.results_view.set_busy(busy)
        self.review_view.set_busy(busy)
        self.predict_view.set_busy(busy)
        if busy:
            self.status_label.setText(f"running: {self.runner.current}")

    def report_error(self, message: str, detail: str = "") -> None:
        """A clear message in a dialog (non-blocking) and the status bar; the app stays usable."""
        self.last_error = message
        self.status_label.setText(message)
        box = QMessageBox(QMessageBox.Warning, "MURID Studio", message, QMessageBox.Ok, self)
        if detail:
            box.setDetailedText(detail)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()
        self._dialog = box

    def _set_project_views_enabled(self, enabled: bool) -> None:
        for i in range(1, len(VIEWS)):
            self.tabs.setTabEnabled(i, enabled)

    def _on_tab(self, index: int) -> None:
        if VIEWS[index] != "review":
            self.review_view.save_current()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.review_view.save_current()
        self.runner.shutdown()
        self.reader.shutdown()
        super().closeEvent(event)
