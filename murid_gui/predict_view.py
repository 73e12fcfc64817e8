"""Predict view: the project's student (or teacher) on the user's own images.

Open a folder or drop images in; each is segmented on the worker thread (never the GUI thread)
and shown with its prediction overlaid at an adjustable opacity, the confidence map, and a
legend of the classes it contains. "Save masks" writes them as `murid predict` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from murid_engine.imageio import IMAGE_SUFFIXES
from murid_engine.jobs import Progress
from murid_engine.labels import CLASS_NAMES, NUM_CLASSES, PALETTE

from . import tasks
from .theme import confidence_lut, label_image_item, label_lut, set_label_image


class PredictView(QWidget):
    def __init__(self, runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.project = None
        self.results: dict[str, tasks.Prediction] = {}
        self.setAcceptDrops(True)
        self.open_button = QPushButton("Open folder…")
        self.open_button.clicked.connect(self._choose_folder)
        self.model = QComboBox()
        self.model.addItem("student", "student")
        self.model.addItem("teacher", "teacher")
        self.save_button = QPushButton("Save masks…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._choose_output)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        self.status = QLabel("open a folder of images, or drop images here")
        top = QHBoxLayout()
        for w in (self.open_button, QLabel("model"), self.model, self.save_button, QLabel("opacity")):
            top.addWidget(w)
        top.addWidget(self.opacity, 1)

        self.images = QListWidget()
        self.images.setTextElideMode(Qt.ElideMiddle)
        self.images.currentTextChanged.connect(self.show_image)
        self.view = pg.GraphicsLayoutWidget()
        self.left = self.view.addViewBox(row=0, col=0, lockAspect=True, invertY=True)
        self.right = self.view.addViewBox(row=0, col=1, lockAspect=True, invertY=True)
        self.right.setXLink(self.left)
        self.right.setYLink(self.left)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = label_image_item()
        self.overlay.setOpacity(0.6)
        self.confidence = label_image_item()
        self.left.addItem(self.image)
        self.left.addItem(self.overlay)
        self.right.addItem(self.confidence)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.RichText)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("image with prediction · confidence (dark: unsure, yellow: sure)"))
        rl.addWidget(self.view, 1)
        rl.addWidget(self.legend)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.images)
        split.addWidget(right)
        split.setSizes([220, 900])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        runner.finished.connect(self._finished)
        runner.event.connect(self._on_event)

    def set_project(self, project) -> None:
        self.project = project
        self.results = {}
        self.images.clear()
        self.save_button.setEnabled(False)
        has_student = project.checkpoint_path("student").is_file()
        self.model.setCurrentIndex(0 if has_student else 1)

    def set_busy(self, busy: bool) -> None:
        """One job at a time: the buttons wait for the running one."""
        self.open_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy and bool(self.results))

    # ------------------------------------------------------------------ input
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        files = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        folders = [p for p in paths if p.is_dir()]
        if folders:
            self.predict(folders[0])
        elif files:
            self.predict(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.predict(Path(folder))

    def predict(self, source: Path | list[Path]) -> bool:
        """Segment a folder (or a list of image files) on the worker; False when it is busy."""
        if self.project is None:
            self.status.setText("open a project first: its trained model predicts")
            return False
        self.status.setText("predicting …")
        return self.runner.start("predict", tasks.predict_job(self.project.root, self.model.currentData(),
                                                              source))

    def _choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Write the masks into")
        if folder:
            self.save_masks(Path(folder))

    def save_masks(self, output: Path) -> bool:
        return self.runner.start("save-masks", tasks.save_masks_job(list(self.results.values()), output))

    # ------------------------------------------------------------------ results
    def _on_event(self, event) -> None:
        if isinstance(event, Progress) and event.stage.startswith("predict"):
            self.status.setText(f"predicting {event.iteration}/{event.total} …")

    def _finished(self, name: str, result) -> None:
        if name == "predict" and result is not None:
            self.results = {p.stem: p for p in result}
            self.images.clear()
            self.images.addItems(list(self.results))
            for i, p in enumerate(result):
                self.images.item(i).setToolTip(str(p.path))
            self.save_button.setEnabled(bool(result))
            self.status.setText(f"{len(result)} images predicted by the {self.model.currentText()}")
            if result:
                self.images.setCurrentRow(0)
        elif name == "save-masks" and result is not None:
            self.status.setText(f"{result['count']} masks written to {result['output']} "
                                "(train-id PNGs and _color.png, as `murid predict --color`)")

    def show_image(self, stem: str) -> None:
        p = self.results.get(stem)
        if p is None:
            return
        self.image.setImage(p.rgb, autoLevels=False, levels=(0, 255))
        set_label_image(self.overlay, p.pred, label_lut())
        set_label_image(self.confidence, np.clip(p.conf * 255, 0, 255).astype(np.uint8), confidence_lut())
        self.left.autoRange(padding=0)
        counts = np.bincount(p.pred.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        share = counts / max(1, counts.sum())
        order = np.argsort(-counts)
        self.legend.setText(" ".join(
            f"<span style='color: rgb{tuple(int(v) for v in PALETTE[c])}'>■</span> "
            f"{CLASS_NAMES[c]} {100 * share[c]:.0f}%" for c in order if counts[c] > 0))
