"""Train view: start / pause / resume / stop, stage and round progress with ETA, losses, previews."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from murid_engine.jobs import (EvaluationResult, Message, Preview, Progress, RoundReady, StageFinished,
                               StageStarted)
from murid_engine.records import EvaluationRecord, read_records

from murid_engine.project_state import ProjectState, project_state

from .loss_plot import LossHistory, LossPlot
from .preview_strip_view import PreviewStripView
from .reader import Reader, paced, yield_gil
from .round_data import round_preview


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA —"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m:02d}:{s:02d}"


RUNNING_NOTE = "Training. Pause holds it where it is; Stop saves a checkpoint and ends the run."


@dataclass
class TrainHistory:
    """What the Train view shows of a project before (or without) a live run; read off the GUI thread."""
    losses: LossHistory
    evals: list[EvaluationRecord]  # the evaluation records with a score, in order
    preview: Preview | None  # the latest round's pseudo-labels
    state: ProjectState  # which stages are done, and what can come next


def read_history(project) -> TrainHistory:
    """On the reader thread: 50,000 rows are ~0.3 s of Python, paced so the GUI gets the GIL."""
    records = read_records(paced(project.read_metrics(between_chunks=yield_gil)))
    evals = [e for e in records if isinstance(e, EvaluationRecord) and e.miou is not None]
    r = project.latest_round()
    preview = round_preview(project, r) if r is not None else None
    losses = LossHistory.from_records(paced(records)).prepare()
    return TrainHistory(losses, evals, preview, project_state(project, records))


class TrainView(QWidget):
    """Shows the job's events; its buttons ask the main window to start, pause, resume or stop."""

    start_requested = Signal()
    pause_requested = Signal()
    resume_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None, reader: Reader | None = None) -> None:
        super().__init__(parent)
        self.reader = reader or Reader(self)
        self.history_pending = False
        self.state: ProjectState | None = None  # None until the reader has looked
        self.busy = False
        self.title = QLabel("No project open")
        self.title.setMinimumWidth(50)
        self.start_button = QPushButton("▶ Start training")
        self.pause_button = QPushButton("❚❚ Pause")
        self.stop_button = QPushButton("■ Stop")
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.clicked.connect(self._pause_clicked)
        self.stop_button.clicked.connect(self.stop_requested)
        self.stage_label = QLabel("stage —")
        self.stage_bar = QProgressBar()
        self.round_label = QLabel("round —")
        self.round_bar = QProgressBar()
        self.eta_label = QLabel(format_eta(None))
        self.score_label = QLabel("")
        self.next_label = QLabel("")  # the project's state in words: what can be done next
        self.next_label.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.losses = LossPlot()
        self.previews = PreviewStripView()

        buttons = QHBoxLayout()
        for w in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.score_label)
        grid = QGridLayout()
        grid.addWidget(self.stage_label, 0, 0)
        grid.addWidget(self.stage_bar, 0, 1)
        grid.addWidget(self.eta_label, 0, 2)
        grid.addWidget(self.round_label, 1, 0)
        grid.addWidget(self.round_bar, 1, 1)
        grid.setColumnStretch(1, 1)
        left = QSplitter(Qt.Vertical)
        left.addWidget(self.losses)
        left.addWidget(self.log)
        left.setSizes([400, 120])
        body = QSplitter(Qt.Horizontal)
        body.addWidget(left)
        body.addWidget(self.previews)
        body.setSizes([500, 500])
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(buttons)
        layout.addWidget(self.next_label)
        layout.addLayout(grid)
        layout.addWidget(body, 1)
        self.paused = False
        self.set_running(False)

    # ------------------------------------------------------------------ state from the runner
    def set_project(self, project) -> None:
        self.title.setText(f"<b>{project.root.name}</b> — {project.root}")
        previous = [self.losses.history]  # freed on the reader thread, once the plot lets it go
        self.losses.clear()
        self.reader.release(previous)
        self.previews.clear()
        self.log.clear()
        self.score_label.setText("")
        self.state = None
        self.start_button.setText("▶ Start training")
        self.next_label.setText("reading the project …")
        self._update_start()
        self._reset_bars()
        # metrics.jsonl of a long run has tens of thousands of rows: read on the reader thread.
        self.history_pending = True
        self.append_log("reading the training history …")
        self.reader.read("history", lambda: read_history(project), self._show_history,
                         lambda message: self._history_failed(project, message))

    def _show_history(self, history: TrainHistory) -> None:
        self.history_pending = False
        self.apply_state(history.state)
        self.log.clear()
        self.losses.set_history(history.losses)
        for e in history.evals:
            where = e.stage + (f" round {e.round}" if e.round else "")
            self.append_log(f"{where}: {e.model} target-val mIoU {100 * e.miou:.2f}")
        if history.evals:
            last = history.evals[-1]
            self.score_label.setText(f"last target-val mIoU ({last.model}): {100 * last.miou:.1f}")
        if history.preview is not None and not self.previews.history:
            self.previews.add(history.preview)  # until training runs: the latest round's labels

    def _history_failed(self, project, message: str) -> None:
        self.history_pending = False
        self.append_log(f"could not read the training history of {project.root}: {message}")
        self.next_label.setText("")
        self.state = ProjectState((), 0, True, False, False, False)  # it can still be continued
        self._update_start()

    def refresh_state(self, project) -> None:
        """Look again at what is done (after a job), on the reader thread."""
        self.reader.read("state", lambda: project_state(project), self.apply_state)

    def apply_state(self, state: ProjectState) -> None:
        """A finished project says so and names what comes next, instead of offering to train."""
        self.state = state
        self.next_label.setText(state.next_steps())
        if state.finished:
            self.start_button.setText("✓ Training finished")
            self.stage_label.setText("all stages done: " + ", ".join(s.name for s in state.stages))
            self.stage_bar.setRange(0, 1)
            self.stage_bar.setValue(1)
            self.eta_label.setText(format_eta(None))
            if state.rounds:
                self.round_label.setText(f"round {state.rounds}/{state.rounds}")
                self.round_bar.setRange(0, state.rounds)
                self.round_bar.setValue(state.rounds)
        else:
            self.start_button.setText("▶ Continue training" if state.has_run else "▶ Start training")
        self._update_start()

    def _reset_bars(self) -> None:
        self.stage_label.setText("stage —")
        self.round_label.setText("round —")
        for bar in (self.stage_bar, self.round_bar):
            bar.setRange(0, 1)
            bar.setValue(0)
        self.eta_label.setText(format_eta(None))

    def _update_start(self) -> None:
        ready = self.state is not None and not self.state.finished
        self.start_button.setEnabled(ready and not self.busy)

    def set_busy(self, busy: bool) -> None:
        """Another job (or this one) holds the worker: one job at a time."""
        self.busy = busy
        self._update_start()

    def set_running(self, running: bool) -> None:
        self._update_start()
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        if running:  # the state's words ("Continue training …") would read as stale meanwhile
            self.next_label.setText(RUNNING_NOTE)
        else:
            self.set_paused(False)
            if self.state is not None:
                self.next_label.setText(self.state.next_steps())

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.pause_button.setText("▶ Resume" if paused else "❚❚ Pause")

    def _pause_clicked(self) -> None:
        (self.resume_requested if self.paused else self.pause_requested).emit()

    def job_started(self) -> None:
        if self.history_pending:  # it would replace the live curves: they start afresh instead
            self.reader.cancel("history")
            self.history_pending = False
        self.losses.start_live()
        self.append_log("training started")

    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.stage_label.setText(f"{event.stage} {event.iteration}/{event.total}")
            self.stage_bar.setRange(0, max(event.total, 1))
            self.stage_bar.setValue(event.iteration)
            self.eta_label.setText(format_eta(event.eta_s))
            if event.round is not None and event.rounds:
                self.round_label.setText(f"round {event.round}/{event.rounds}")
                self.round_bar.setRange(0, event.rounds)
                self.round_bar.setValue(event.round - 1 if event.iteration < event.total else event.round)
        elif isinstance(event, StageStarted):
            self.stage_label.setText(f"{event.stage} …")
            self.stage_bar.setRange(0, 0)  # busy until the first progress
            self.append_log(f"{event.stage}: started")
        elif isinstance(event, StageFinished):
            self.stage_bar.setRange(0, 1)
            self.stage_bar.setValue(1)
            self.append_log(f"{event.stage}: finished")
        elif isinstance(event, RoundReady):
            self.append_log(f"round {event.round}: pseudo-labels ready (portion {event.portion:g}); "
                            "open the Review view to inspect them")
        elif isinstance(event, EvaluationResult):
            miou = event.scores.get("miou")
            if miou is not None:
                self.score_label.setText(f"target-val mIoU ({event.model}): {100 * miou:.1f}")
                self.append_log(f"{event.model}: target-val mIoU {100 * miou:.2f}")
        elif isinstance(event, Message):
            self.append_log(event.text)
        elif type(event).__name__ == "Preview":
            self.previews.add(event)
