"""The live strip of target images: image, prediction and confidence, with a slider back in time."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from .theme import confidence_lut, label_image_item, label_lut, set_label_image

STRIP_SIZE = 4  # murid_engine.training.previews.STRIP_SIZE (not imported: it loads torch)
MAX_HISTORY = 300  # previews kept for the slider (each a few hundred KB at most)
ROWS = ("image", "prediction", "confidence")


class PreviewStripView(QWidget):
    """Shows the newest preview unless the user has moved the slider back ("follow" off)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history: list = []
        self.view = pg.GraphicsLayoutWidget()
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._on_slider)
        self.follow = QCheckBox("follow live")
        self.follow.setChecked(True)
        self.follow.toggled.connect(lambda on: on and self._show_last())
        self.caption = QLabel("no preview yet: start training")
        self.caption.setMinimumWidth(50)
        self.caption.setWordWrap(True)  # a long caption takes a second line, not the view's edge
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Previews"))
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.follow)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 6, 0)  # off the window's edge, as the loss panel is
        layout.addWidget(self.view, 1)
        layout.addLayout(bar)
        layout.addWidget(self.caption)
        self._items: list[list[pg.ImageItem]] = []
        self._shown: int | None = None
        self._label_lut = label_lut()
        self._conf_lut = confidence_lut()
        self._build(STRIP_SIZE)  # built once up front: not on the GUI thread mid-training

    def _build(self, n: int) -> None:
        self.view.clear()
        self._items = []
        for row, name in enumerate(ROWS):
            items = []
            for col in range(n):
                box = self.view.addViewBox(row=row, col=col, lockAspect=True, enableMouse=False)
                box.invertY(True)
                item = label_image_item() if name != "image" else pg.ImageItem(axisOrder="row-major")
                box.addItem(item)
                items.append(item)
            self._items.append(items)

    def add(self, preview) -> None:
        """A Preview event (already copied by the worker's sink)."""
        self.history.append(preview)
        if len(self.history) > MAX_HISTORY:
            del self.history[0]
        self.slider.blockSignals(True)  # napari style: a model update moves no feedback loop
        self.slider.setRange(0, len(self.history) - 1)
        if self.follow.isChecked():
            self.slider.setValue(len(self.history) - 1)
        self.slider.blockSignals(False)
        if self.follow.isChecked():
            self.show_index(len(self.history) - 1)

    def clear(self) -> None:
        """Forget the previews; the image items stay (building them is the costly part)."""
        self.history.clear()
        self.slider.setRange(0, 0)
        for row in self._items:
            for item in row:
                item.clear()
        self._shown = None
        self.caption.setText("no preview yet: start training")

    def _on_slider(self, value: int) -> None:
        if value < len(self.history) - 1:
            self.follow.blockSignals(True)
            self.follow.setChecked(False)
            self.follow.blockSignals(False)
        self.show_index(value)

    def _show_last(self) -> None:
        if self.history:
            self.slider.setValue(len(self.history) - 1)
            self.show_index(len(self.history) - 1)

    def show_index(self, index: int) -> None:
        if not 0 <= index < len(self.history):
            return
        p = self.history[index]
        n = len(p.stems)
        if not self._items or len(self._items[0]) != n:
            self._build(n)
        for col in range(n):
            self._items[0][col].setImage(p.images[col], autoLevels=False, levels=(0, 255))
            set_label_image(self._items[1][col], p.predictions[col], self._label_lut)
            conf = np.clip(np.rint(p.confidence[col].astype(np.float32) * 255), 0, 255).astype(np.uint8)
            set_label_image(self._items[2][col], conf, self._conf_lut)
        self._shown = index
        mean = float(np.mean(p.confidence))
        self.caption.setText(f"preview {index + 1}/{len(self.history)}: {p.stage} iteration "
                             f"{p.iteration} · mean confidence {mean:.2f} · rows: image, "
                             "prediction, confidence (dark = unsure)")

    @property
    def shown(self):
        return None if self._shown is None else self.history[self._shown]
