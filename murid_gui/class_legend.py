"""The palette legend: one toggle per class (visibility), its colour, and a paint-class choice."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from murid_engine.labels import CLASS_NAMES, PALETTE


def swatch(c: int, size: int = 12) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(*[int(v) for v in PALETTE[c]]) if c < len(PALETTE) else QColor(0, 0, 0))
    return QIcon(pix)


class ClassLegend(QWidget):
    visibility_changed = Signal(object)  # (19,) bool array

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout()
        grid.setSpacing(2)
        self.boxes: list[QCheckBox] = []
        for c, name in enumerate(CLASS_NAMES):
            box = QCheckBox(name)
            box.setIcon(swatch(c))
            box.setChecked(True)
            box.toggled.connect(self._emit)
            grid.addWidget(box, c // 2, c % 2)
            self.boxes.append(box)
        all_on, all_off = QPushButton("all"), QPushButton("none")
        all_on.clicked.connect(lambda: self.set_all(True))
        all_off.clicked.connect(lambda: self.set_all(False))
        row = QHBoxLayout()
        row.addWidget(all_on)
        row.addWidget(all_off)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        layout.addLayout(row)

    def visible(self) -> np.ndarray:
        return np.array([b.isChecked() for b in self.boxes], dtype=bool)

    def set_all(self, on: bool) -> None:
        for b in self.boxes:  # one signal for the whole change, not nineteen
            b.blockSignals(True)
            b.setChecked(on)
            b.blockSignals(False)
        self._emit()

    def _emit(self, *_) -> None:
        self.visibility_changed.emit(self.visible())
