"""Errors view: where the models are wrong on the labelled target val split, worst image first.

"Analyse val split" runs each model the project holds over every val image on the worker
(murid_engine.error_analysis; progress per image, cancellable) and caches the result in the
project, so reopening is instant. The list ranks images by their own mIoU under the chosen
model; a confusion-matrix cell clicked in the Results view (class i predicted as j) lists the
images holding that confusion most. The cache and each image are read on a reader thread.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
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

from murid_engine.error_analysis import STAGE, ErrorAnalysis, ValImages, load_analysis
from murid_engine.jobs import Progress
from murid_engine.labels import CLASS_NAMES

from . import tasks
from .error_panels import TITLES, ErrorPanels, dimmed_grey
from .reader import Reader

JOB = "error-analysis"


def _load_index(project):
    """(analysis or None, why it is stale or None): runs on the reader thread."""
    analysis = load_analysis(project)
    return analysis, (analysis.stale_reason(project) if analysis is not None else None)


class _Value(QTableWidgetItem):
    """A right-aligned number cell."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)


class ErrorBrowser(QWidget):
    def __init__(self, runner, parent: QWidget | None = None, reader: Reader | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.reader = reader or Reader(self)
        self.project = None
        self.analysis: ErrorAnalysis | None = None
        self.confusion: tuple[str, int, int] | None = None  # (model, gt, pred) the list is filtered by
        self._pending_confusion: tuple[str, int, int] | None = None
        self._val: ValImages | None = None
        self._index_loading = False

        self.analyse_button = QPushButton("Analyse val split")
        self.analyse_button.setToolTip("Run every model of the project over the labelled target val "
                                       "images and keep each image's scores and predictions in the project")
        self.analyse_button.clicked.connect(lambda _=False: self.analyse())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.runner.stop)
        self.progress = QProgressBar()
        self.rank_model = QComboBox()
        self.rank_model.setToolTip("The model whose per-image mIoU orders the list")
        self.rank_model.currentIndexChanged.connect(self._on_rank_model)
        self.status = QLabel("open a project")
        self.status.setMinimumWidth(50)
        self.status.setWordWrap(True)
        self.filter_label = QLabel("")
        self.show_all_button = QPushButton("Show all images")
        self.show_all_button.clicked.connect(lambda _=False: self.show_all())
        top = QHBoxLayout()
        for w in (self.analyse_button, self.cancel_button):
            top.addWidget(w)
        top.addWidget(self.progress, 1)
        top.addWidget(QLabel("worst first by"))
        top.addWidget(self.rank_model)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter_label, 1)
        filter_row.addWidget(self.show_all_button)
        self.filter_box = QWidget()
        self.filter_box.setLayout(filter_row)
        filter_row.setContentsMargins(0, 0, 0, 0)
        self.filter_box.hide()

        self.list = QTableWidget(0, 2)
        self.list.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.list.verticalHeader().hide()
        # A stem's start (Cityscapes: the city) and its end (the frame) both tell images apart.
        self.list.setTextElideMode(Qt.ElideMiddle)
        self.list.itemSelectionChanged.connect(self._on_select)
        self.panels = ErrorPanels()
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the stem column gives way
        list_box = QWidget()
        lb = QVBoxLayout(list_box)
        lb.setContentsMargins(0, 0, 0, 0)
        lb.addWidget(QLabel("each image's own mIoU (%) by model"))
        lb.addWidget(self.list, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(list_box)
        split.addWidget(self.panels)
        split.setSizes([440, 840])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.filter_box)
        layout.addWidget(split, 1)

        runner.event.connect(self._on_event)
        runner.finished.connect(self._on_finished)
        runner.busy_changed.connect(self.set_busy)

    # ------------------------------------------------------------------ project and cache
    def set_project(self, project) -> None:
        self.project = project
        self._set_analysis(None)
        self.status.setText("reading the last error analysis …")
        self._read_index()

    def _read_index(self) -> None:
        self._index_loading = True
        self.reader.read("errors-index", lambda p=self.project: _load_index(p), self._index_read,
                         self._index_failed)

    def _index_read(self, result) -> None:
        self._index_loading = False
        analysis, stale = result
        if analysis is None:
            self.status.setText("No error analysis yet: 'Analyse val split' runs each model over the "
                                "labelled val images (kept in the project, so this is done once).")
            self._update_buttons()
            if self._pending_confusion is not None:
                self.analyse()
            return
        self._set_analysis(analysis, stale)

    def _index_failed(self, message: str) -> None:
        self._index_loading = False
        self._pending_confusion = None
        self.status.setText(message)
        self._update_buttons()

    def _set_analysis(self, analysis: ErrorAnalysis | None, stale: str | None = None) -> None:
        self.analysis = analysis
        self._val = ValImages(analysis) if analysis is not None else None
        self.reader.cancel("errors-image")
        self.panels.clear()
        self.rank_model.blockSignals(True)
        self.rank_model.clear()
        for m in (analysis.models if analysis is not None else ()):
            self.rank_model.addItem(TITLES.get(m, m), m)
        self.rank_model.setCurrentIndex(self.rank_model.count() - 1)  # the deployed model: last
        self.rank_model.blockSignals(False)
        if analysis is not None:
            self.panels.set_models(analysis.models)
            note = f" (out of date: {stale}; analyse again)" if stale else ""
            self.status.setText(f"{len(analysis)} val images of {analysis.dataset}"
                                f"{', split ' + analysis.split if analysis.split else ''}{note}")
        self.confusion = None
        pending, self._pending_confusion = self._pending_confusion, None
        if pending is not None and analysis is not None:
            self.show_confusion(*pending)
        else:
            self.filter_box.hide()
            self._fill_list()
        self._update_buttons()

    # ------------------------------------------------------------------ the job
    def analyse(self) -> bool:
        if self.project is None:
            return False
        started = self.runner.start(JOB, tasks.error_analysis_job(self.project.root))
        if started:
            self.progress.setRange(0, 0)
            self.status.setText("analysing the val split …")
        else:
            self.status.setText(f"the {self.runner.current} job is running; analyse when it is done")
        return started

    def set_busy(self, busy: bool) -> None:
        self._update_buttons(busy)

    def _update_buttons(self, busy: bool | None = None) -> None:
        busy = self.runner.busy if busy is None else busy
        self.analyse_button.setEnabled(not busy and self.project is not None)
        self.analyse_button.setText("Analyse again" if self.analysis is not None else "Analyse val split")
        self.cancel_button.setEnabled(busy and self.runner.current == JOB)

    def _on_event(self, event) -> None:
        if isinstance(event, Progress) and event.stage == STAGE:
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(event.iteration)
            self.status.setText(f"analysing image {event.iteration}/{event.total} …")

    def _on_finished(self, name: str, result) -> None:
        if name == JOB:
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if result is not None else 0)
            if isinstance(result, ErrorAnalysis):
                self._set_analysis(result)
            else:
                self._pending_confusion = None
                self.status.setText("analysis stopped or failed; the last one (if any) is kept")
        elif self.project is not None and name in ("train", "distil-evaluate"):
            self._read_index()  # new checkpoints make the cached analysis out of date: it says so

    # ------------------------------------------------------------------ the list
    def current_model(self) -> str | None:
        return self.rank_model.currentData()

    def rows(self) -> list[int]:
        """The analysis indices of the images listed, in the order shown."""
        return [self.list.item(r, 0).data(Qt.UserRole) for r in range(self.list.rowCount())]

    def _fill_list(self) -> None:
        a, model = self.analysis, self.current_model()
        self.list.blockSignals(True)
        self.list.setRowCount(0)
        if a is None or model is None:
            self.list.blockSignals(False)
            return
        if self.confusion is not None:
            cm_model, gt, pred = self.confusion
            ranked = a.confusion_ranking(cm_model, gt, pred)
            order, pixels = [i for i, _ in ranked], dict(ranked)
            shown = (cm_model,)  # room for the stem beside the pixel counts
            headers = ["image", "pixels", TITLES.get(cm_model, cm_model)]
        else:
            order, pixels, shown = a.worst_first(model), {}, a.models
            headers = ["image"] + [TITLES.get(m, m) for m in shown]
        mious = {m: a.miou(m) for m in shown}
        self.list.setColumnCount(len(headers))
        self.list.setHorizontalHeaderLabels(headers)
        self.list.setRowCount(len(order))
        for row, i in enumerate(order):
            name = QTableWidgetItem(a.stems[i])
            name.setData(Qt.UserRole, i)
            name.setToolTip(f"{a.stems[i]}\n{a.images[i]}")
            self.list.setItem(row, 0, name)
            cells = [f"{pixels[i]}"] if pixels else []
            cells += ["—" if np.isnan(mious[m][i]) else f"{100 * mious[m][i]:.1f}" for m in shown]
            for col, text in enumerate(cells, start=1):
                self.list.setItem(row, col, _Value(text))
        header = self.list.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for col in range(1, len(headers)):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        self.list.blockSignals(False)
        if order:
            self.list.selectRow(0)
        else:
            self.panels.clear()

    def _on_rank_model(self, _index: int) -> None:
        if self.confusion is not None:  # the same cell, another model's images
            self.show_confusion(self.current_model(), *self.confusion[1:])
        else:
            self._fill_list()

    def show_all(self) -> None:
        """Leave the confusion filter: every image, worst first."""
        self.confusion = None
        self.filter_box.hide()
        self._fill_list()

    def show_confusion(self, model: str, gt: int, pred: int) -> None:
        """List the images where `model` predicts class `gt` as `pred` most (a confusion-matrix cell)."""
        if self.analysis is None:
            # Not analysed yet (or still being read): list them once the analysis is there.
            self._pending_confusion = (model, gt, pred)
            self.status.setText(f"{CLASS_NAMES[gt]} → {CLASS_NAMES[pred]}: the val split is analysed first …")
            if self.project is not None and not self._index_loading:
                self.analyse()
            return
        if model not in self.analysis.models:
            self.status.setText(f"the error analysis holds no {TITLES.get(model, model)}; analyse again")
            return
        self.confusion = (model, gt, pred)
        index = self.rank_model.findData(model)
        if index >= 0:
            self.rank_model.blockSignals(True)
            self.rank_model.setCurrentIndex(index)
            self.rank_model.blockSignals(False)
        what = (f"ground truth {CLASS_NAMES[gt]} missed" if gt == pred
                else f"ground truth {CLASS_NAMES[gt]} predicted as {CLASS_NAMES[pred]}")
        self._fill_list()
        self.filter_label.setText(f"{what} by the {TITLES.get(model, model)}: {self.list.rowCount()} "
                                  "images, most pixels first")
        self.filter_box.show()

    # ------------------------------------------------------------------ one image
    def _on_select(self) -> None:
        row = self.list.currentRow()
        if row < 0 or self.analysis is None:
            return
        self.show_index(self.list.item(row, 0).data(Qt.UserRole))

    def show_index(self, index: int) -> None:
        """Show analysis image `index` (read on the reader thread; the last one stays meanwhile)."""
        val, analysis = self._val, self.analysis

        def load():
            bundle = val.load(index)
            return bundle, dimmed_grey(bundle.rgb)

        def done(result) -> None:
            if analysis is not self.analysis:
                return
            bundle, dimmed = result
            self.panels.show(bundle, dimmed, {m: analysis.counts(m)[index] for m in analysis.models})

        self.reader.read("errors-image", load, done, lambda msg: self.status.setText(msg))
