"""Distil & evaluate: one click distils the student (if needed) and compares the models.

Shows the mIoU table with each model's speed, per-class IoU bars, a confusion matrix and export
buttons. A project's last comparison (reports/evaluation.json) is shown when it is opened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from murid_engine.comparison import Comparison, ModelResult, read_comparison
from murid_engine.errors import UserError
from murid_engine.jobs import Progress, StageFinished, StageStarted
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import Project
from murid_engine.project_state import student_is_stale
from murid_engine.usecases import Evaluation

from . import tasks
from .reader import Reader

MODEL_COLORS = {"source_only": "#90A4AE", "teacher": "#FFB74D", "student": "#4FC3F7"}
SHORT = ("road", "sidew.", "build.", "wall", "fence", "pole", "light", "sign", "veget.", "terr.",
         "sky", "person", "rider", "car", "truck", "bus", "train", "motor.", "bike")
TABLE_COLUMNS = ("model", "backbone", "mIoU", "mIoU-16", "mIoU-13", "pixel acc.", "ms / image", "speed-up")


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


@dataclass(frozen=True)
class SavedResults:
    """What the view shows of a project when it opens, read on the reader thread."""
    comparison: Comparison | None  # reports/evaluation.json, None when there is none
    problem: str | None  # why it could not be read
    has_student: bool
    student_stale: bool  # the teacher was trained on after the student was distilled
    has_report_html: bool


def read_saved_results(project: Project) -> SavedResults:
    comparison = problem = None
    try:
        comparison = read_comparison(project.reports_dir)
    except UserError as exc:
        problem = f"{exc}; evaluate again"
    return SavedResults(comparison, problem, project.checkpoint_path("student").is_file(),
                        student_is_stale(project), (project.reports_dir / "evaluation.html").is_file())


class ResultsView(QWidget):
    confusion_cell_clicked = Signal(str, int, int)  # model, ground-truth class, predicted class

    def __init__(self, runner, parent: QWidget | None = None, reader: Reader | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.reader = reader or Reader(self)
        self.project: Project | None = None
        self.comparison: Comparison | None = None
        self.saved: SavedResults | None = None  # None while the reader looks
        self.busy = False
        self.exported: list[str] = []

        self.run_button = QPushButton("⚗ Distil && evaluate")
        self.run_button.setToolTip("Distil the student (when there is none yet), then evaluate the "
                                   "source-only model, the teacher and the student on target-val")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Cancel")
        self.stop_button.clicked.connect(self.runner.stop)
        self.stop_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setMinimumWidth(50)
        # A student older than its teacher: said in words, with the one click that fixes it.
        self.stale_label = QLabel("⚠ The student is stale: the teacher was trained on after this "
                                  "student was distilled, so its scores and exports describe an "
                                  "older teacher.")
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet("color: #FFB74D;")
        self.redistil_button = QPushButton("Re-distil")
        self.redistil_button.setToolTip("Distil a new student from the current teacher, then evaluate")
        self.redistil_button.clicked.connect(self.redistil)
        self.stale_box = QWidget()
        stale_row = QHBoxLayout(self.stale_box)
        stale_row.setContentsMargins(0, 0, 0, 0)
        stale_row.addWidget(self.stale_label, 1)
        stale_row.addWidget(self.redistil_button)
        self.stale_box.hide()
        self.report_button = QPushButton("Open report")
        self.report_button.setToolTip("The HTML report (tables and confusion matrices) in the project's reports/")
        self.report_button.clicked.connect(self.open_report)
        self.export_buttons = {}
        top = QHBoxLayout()
        top.addWidget(self.run_button)
        top.addWidget(self.stop_button)
        top.addWidget(self.progress, 1)
        top.addWidget(self.report_button)
        for fmt, text in (("torchscript", "Export TorchScript"), ("onnx", "Export ONNX")):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, f=fmt: self.export(f))
            top.addWidget(b)
            self.export_buttons[fmt] = b

        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setMaximumHeight(130)
        self.speed_label = QLabel("")
        self.speed_label.setWordWrap(True)

        self.bars = pg.PlotWidget()
        self.bars.setLabel("left", "IoU (%)")
        self.bars.setYRange(0, 100)
        self.bars.setMouseEnabled(False, False)
        self.bars.addLegend(offset=(-10, 10))
        axis = self.bars.getAxis("bottom")
        axis.setTicks([[(i, name) for i, name in enumerate(SHORT)]])

        self.matrix_model = QComboBox()
        self.matrix_model.currentIndexChanged.connect(self._draw_matrix)
        self.matrix = pg.PlotWidget()
        self.matrix.setAspectLocked(True)
        self.matrix.invertY(True)
        self.matrix.setMouseEnabled(False, False)
        self.matrix_item = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.matrix_item.setLookupTable(pg.colormap.get("viridis").getLookupTable(0.0, 1.0, 256))
        self.matrix.addItem(self.matrix_item)
        self.matrix.setLabel("left", "ground truth")
        self.matrix.setLabel("bottom", "prediction")
        # Full names down the side; short ones along the bottom, where 19 must fit side by side.
        self.matrix.getAxis("left").setTicks([[(i + 0.5, n) for i, n in enumerate(CLASS_NAMES)]])
        # Two levels: pyqtgraph leaves out the second (odd classes) when the matrix is too narrow.
        self.matrix.getAxis("bottom").setTicks([[(i + 0.5, n) for i, n in enumerate(SHORT) if i % 2 == 0],
                                                [(i + 0.5, n) for i, n in enumerate(SHORT) if i % 2]])
        self.matrix.scene().sigMouseMoved.connect(self._matrix_hover)
        self.matrix.scene().sigMouseClicked.connect(self._matrix_click)
        matrix_box = QWidget()
        ml = QVBoxLayout(matrix_box)
        ml.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Confusion matrix (row-normalised) of"))
        row.addWidget(self.matrix_model, 1)
        ml.addLayout(row)
        ml.addWidget(self.matrix, 1)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.bars)
        split.addWidget(matrix_box)
        split.setSizes([700, 420])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.stale_box)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.speed_label)
        layout.addWidget(split, 1)
        self._bar_items: list = []

    # ------------------------------------------------------------------ project
    def set_project(self, project: Project) -> None:
        self.project = project
        self.exported = []
        self.saved = None
        self.show_results(None)
        self.status.setText("reading the last evaluation …")
        self._update_buttons()
        self.reader.read("results", lambda: read_saved_results(project), self._show_saved,
                         lambda message: self.status.setText(f"could not read the last evaluation: {message}"))

    def _show_saved(self, saved: SavedResults) -> None:
        self.saved = saved
        self.show_results(saved.comparison)
        if saved.problem is not None:
            self.status.setText(saved.problem)
        else:
            self.status.setText("Not evaluated yet: one click distils the student and evaluates it."
                                if saved.comparison is None else f"last evaluation: {self.project.reports_dir}")
        self._update_buttons()

    @property
    def student_stale(self) -> bool:
        return self.saved is not None and self.saved.student_stale

    def _update_buttons(self, busy: bool | None = None) -> None:
        if busy is not None:
            self.busy = busy
        busy = self.busy
        has_student = self.saved is not None and self.saved.has_student
        ready = self.project is not None and self.saved is not None
        self.run_button.setEnabled(not busy and ready)
        self.stop_button.setEnabled(busy)
        for b in self.export_buttons.values():
            b.setEnabled(not busy and has_student)
        self.report_button.setEnabled(self.report_path() is not None)
        self.run_button.setText("⚗ Evaluate again" if has_student else "⚗ Distil && evaluate")
        self.stale_box.setVisible(self.student_stale)
        self.redistil_button.setEnabled(not busy and self.student_stale)
        self.table_marks_stale()

    def table_marks_stale(self) -> None:
        """The student's row says 'stale' while its teacher is newer."""
        student = None if self.comparison is None else self.comparison.model("student")
        if student is None:
            return
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.text().startswith(student.title):
                item.setText(student.title + (" (stale)" if self.student_stale else ""))

    def set_busy(self, busy: bool) -> None:
        self._update_buttons(busy)

    def report_path(self):
        if self.project is None or self.saved is None or not self.saved.has_report_html:
            return None
        return self.project.reports_dir / "evaluation.html"

    def open_report(self) -> bool:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        path = self.report_path()
        return path is not None and QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    # ------------------------------------------------------------------ jobs
    def run(self) -> bool:
        if self.project is None:
            return False
        self.progress.setRange(0, 0)
        return self.runner.start("distil-evaluate", tasks.distil_evaluate_job(self.project.root))

    def redistil(self) -> bool:
        """Distil a new student from the current teacher (the stale one is replaced), then evaluate."""
        if self.project is None:
            return False
        self.progress.setRange(0, 0)
        return self.runner.start("distil-evaluate", tasks.distil_evaluate_job(self.project.root, redistil=True))

    def export(self, fmt: str) -> bool:
        if self.project is None:
            return False
        self.progress.setRange(0, 0)
        return self.runner.start("export", tasks.export_job(self.project.root, fmt))

    def on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(event.iteration)
            self.status.setText(f"{event.stage}: {event.iteration}/{event.total}")
        elif isinstance(event, StageStarted):
            self.progress.setRange(0, 0)
            self.status.setText(f"{event.stage} …")
        elif isinstance(event, StageFinished):
            self.status.setText(f"{event.stage}: done")

    def job_finished(self, name: str, result) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if result else 0)
        if name == "distil-evaluate":
            if isinstance(result, Evaluation):
                self.show_results(result.comparison)
                self.status.setText(f"evaluated; report written to {result.report}")
            elif result is None:
                self.status.setText("stopped (a distillation checkpoint was saved) or failed")
        elif name == "export" and isinstance(result, dict):
            self.exported.append(result["path"])
            checks = ", ".join(f"{100 * v:.2f}% at {k}" for k, v in result.get("agreement", {}).items())
            self.status.setText(f"exported {result['format']} to {result['path']} (agreement {checks})")
        elif name == "export":
            self.status.setText("export cancelled (no file was kept) or failed")
        if name == "distil-evaluate" and isinstance(result, Evaluation):  # a fresh student and its report
            self.saved = SavedResults(result.comparison, None, True, False, True)
        elif name == "distil-evaluate" and self.project is not None:  # stopped or failed: look again
            self.reader.read("results-state", lambda p=self.project: read_saved_results(p), self._after_job)
        self._update_buttons()

    def _after_job(self, saved: SavedResults) -> None:
        """Whether there is a student now, and whether it is stale, once the job has written."""
        self.saved = saved
        self._update_buttons()

    # ------------------------------------------------------------------ drawing
    def show_results(self, comparison: Comparison | None) -> None:
        self.comparison = comparison
        models = comparison.models if comparison is not None else []
        self.table.setRowCount(len(models))
        for r, m in enumerate(models):
            speedup = comparison.speedup(m.name)
            s = m.scores
            cells = (m.title, m.backbone, _pct(s.miou), _pct(s.miou16), _pct(s.miou13), _pct(s.pixel_acc),
                     f"{m.speed.ms:.1f}", f"{speedup:.2f}×" if speedup else "—")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                self.table.setItem(r, c, item)
        self.table_marks_stale()
        up = None if comparison is None else comparison.speedup("student")
        if up:
            t, s = comparison.model("teacher").speed, comparison.model("student").speed
            self.speed_label.setText(
                f"Student {s.ms:.1f} ms vs teacher {t.ms:.1f} ms per image ({up:.2f}× faster) on "
                f"{comparison.device}, {comparison.threads} threads, input {'x'.join(map(str, comparison.speed_size))}")
        else:
            self.speed_label.setText("")
        self._draw_bars(models)
        self.matrix_model.blockSignals(True)
        self.matrix_model.clear()
        for m in models:
            self.matrix_model.addItem(m.title, m.name)
        names = [m.name for m in models]
        if "student" in names:
            self.matrix_model.setCurrentIndex(names.index("student"))
        self.matrix_model.blockSignals(False)
        self._draw_matrix()

    def _draw_bars(self, models: list[ModelResult]) -> None:
        for item in self._bar_items:
            self.bars.removeItem(item)
        self._bar_items = []
        legend = self.bars.plotItem.legend
        legend.clear()
        n = max(len(models), 1)
        width = 0.8 / n
        for k, m in enumerate(models):
            ious = dict(zip(m.scores.class_names(), m.scores.iou))
            heights = np.array([100 * (ious.get(c) or 0.0) for c in CLASS_NAMES])
            x = np.arange(len(CLASS_NAMES)) - 0.4 + width * (k + 0.5)
            bar = pg.BarGraphItem(x=x, height=heights, width=width * 0.95,
                                  brush=MODEL_COLORS.get(m.name, "#CCCCCC"), pen=None)
            self.bars.addItem(bar)
            legend.addItem(bar, f"{m.title} ({_pct(m.scores.miou)})")
            self._bar_items.append(bar)

    def matrix_cell(self, scene_pos) -> tuple[int, int] | None:
        """(ground truth, prediction) of the matrix cell at a scene position, None outside it."""
        image = self.matrix_item.image
        if image is None:
            return None
        p = self.matrix_item.mapFromScene(scene_pos)
        gt, pred = int(np.floor(p.y())), int(np.floor(p.x()))
        return (gt, pred) if 0 <= gt < image.shape[0] and 0 <= pred < image.shape[1] else None

    def _matrix_click(self, event) -> None:
        """A cell clicked: the Errors view lists the images holding that confusion most."""
        cell = self.matrix_cell(event.scenePos())
        if cell is not None and event.button() == Qt.LeftButton and self.matrix_model.currentData():
            self.confusion_cell_clicked.emit(self.matrix_model.currentData(), *cell)

    def _matrix_hover(self, pos) -> None:
        """The cell under the mouse, in words: ground truth, prediction, share of the row."""
        cell = self.matrix_cell(pos) if self.matrix.sceneBoundingRect().contains(pos) else None
        if cell is not None:
            gt, pred = cell
            self.matrix.setToolTip(f"ground truth {CLASS_NAMES[gt]} → predicted {CLASS_NAMES[pred]}: "
                                   f"{100 * self.matrix_item.image[gt, pred]:.1f}% of its pixels "
                                   "(click: the images where it happens most)")
        else:
            self.matrix.setToolTip("")

    def _draw_matrix(self) -> None:
        name = self.matrix_model.currentData()
        model = None if self.comparison is None or name is None else self.comparison.model(name)
        if model is None:
            self.matrix_item.clear()
            return
        m = model.scores.confusion[:, :model.scores.num_classes].astype(np.float64)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        self.matrix_item.setImage(norm.astype(np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.matrix.setTitle(model.title, size="9pt")
