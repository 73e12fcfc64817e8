"""The round's portion slider and per-class threshold sliders, with kept counts and histograms.

Thresholds follow the engine (curriculum.thresholds): automatic per-class values are the CBST
quantiles of the round's confidence histogram at the portion; a class whose slider the user
moved is an override (it wins over the automatic value). Kept-pixel counts come from the
histogram (``kept_counts``), so a slider move never touches an image.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from murid_engine.curriculum.round_summary import RoundSummary
from murid_engine.curriculum.thresholds import ConfidenceHistogram, kept_counts
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import Overrides

from .class_legend import swatch


class ThresholdPanel(QWidget):
    thresholds_changed = Signal(object)  # (19,) float thresholds now in force

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        n = len(CLASS_NAMES)
        self.counts = np.zeros((n, 256))
        self.cap: float | None = None
        self.round_portion = 0.5
        self.portion_touched = False
        self.overrides: dict[int, float] = {}
        self.automatic = np.ones(n)
        self.selected = 0

        self.portion = QSlider(Qt.Horizontal)
        self.portion.setRange(1, 100)
        self.portion.valueChanged.connect(self._on_portion)
        self.portion_label = QLabel()
        self.reset_button = QPushButton("Reset to automatic")
        self.reset_button.clicked.connect(self.reset)
        self.total_label = QLabel()
        self.total_label.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(QLabel("Portion"))
        head.addWidget(self.portion, 1)
        head.addWidget(self.portion_label)

        grid = QGridLayout()
        grid.setSpacing(2)
        self.sliders: list[QSlider] = []
        self.names: list[QPushButton] = []
        self.values: list[QLabel] = []
        self.kept: list[QLabel] = []
        for c, name in enumerate(CLASS_NAMES):
            button = QPushButton(swatch(c), name)
            button.setFlat(True)
            button.setStyleSheet("text-align: left; padding: 1px;")
            button.clicked.connect(lambda _=False, c=c: self.select(c))
            slider = QSlider(Qt.Horizontal)
            slider.setRange(0, 255)
            slider.valueChanged.connect(lambda v, c=c: self._on_class(c, v))
            value, kept = QLabel(), QLabel()
            value.setMinimumWidth(44)
            kept.setMinimumWidth(90)
            for col, w in enumerate((button, slider, value, kept)):
                grid.addWidget(w, c, col)
            self.names.append(button)
            self.sliders.append(slider)
            self.values.append(value)
            self.kept.append(kept)
        grid.setColumnStretch(1, 1)
        rows = QWidget()
        rows.setLayout(grid)
        scroll = QScrollArea()
        scroll.setWidget(rows)
        scroll.setWidgetResizable(True)

        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setMaximumHeight(150)
        self.hist_plot.setLabel("bottom", "confidence")
        self.hist_plot.setMouseEnabled(False, False)
        self.hist_curve = self.hist_plot.plot(stepMode="center", fillLevel=0, brush=(100, 150, 220, 120))
        self.hist_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#FFB74D", width=2))
        self.hist_line.sigPositionChangeFinished.connect(
            lambda line: self.set_override(self.selected, float(np.clip(line.value(), 0, 1))))
        self.hist_plot.addItem(self.hist_line)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.hist_plot)
        layout.addWidget(scroll, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.total_label, 1)
        bottom.addWidget(self.reset_button)
        layout.addLayout(bottom)

    # ------------------------------------------------------------------ model
    def load(self, summary: RoundSummary, saved: Overrides) -> None:
        """A round's summary and the project's saved overrides."""
        self.counts = summary.histogram_counts()
        self.cap = summary.cap
        self.round_portion = summary.portion
        self.portion_touched = saved.portion is not None
        portion = float(saved.portion) if saved.portion is not None else self.round_portion
        self.overrides = {CLASS_NAMES.index(k): float(v) for k, v in saved.thresholds.items()}
        self.portion.blockSignals(True)
        self.portion.setValue(int(round(portion * 100)))
        self.portion.blockSignals(False)
        self._recompute()

    @property
    def portion_value(self) -> float:
        return self.portion.value() / 100.0

    def thresholds(self) -> np.ndarray:
        t = self.automatic.copy()
        for c, v in self.overrides.items():
            t[c] = v
        return t

    def to_overrides(self) -> Overrides:
        return Overrides({CLASS_NAMES[c]: round(v, 6) for c, v in sorted(self.overrides.items())},
                         self.portion_value if self.portion_touched else None)

    def set_override(self, c: int, value: float) -> None:
        self.overrides[c] = float(value)
        self.selected = c
        self._update_view()

    def reset(self) -> None:
        self.overrides.clear()
        self.portion_touched = False
        self.portion.blockSignals(True)
        self.portion.setValue(int(round(self.round_portion * 100)))
        self.portion.blockSignals(False)
        self._recompute()

    def select(self, c: int) -> None:
        self.selected = c
        self._draw_hist()

    # ------------------------------------------------------------------ slots
    def _on_portion(self, value: int) -> None:
        self.portion_touched = True
        self._recompute()

    def _on_class(self, c: int, level: int) -> None:
        self.set_override(c, level / 255.0)

    def _recompute(self) -> None:
        hist = ConfidenceHistogram(len(CLASS_NAMES), quantised=True)
        hist.counts = self.counts
        self.automatic = hist.thresholds(self.portion_value, self.cap)
        self._update_view()

    def _update_view(self) -> None:
        t = self.thresholds()
        kept = kept_counts(self.counts, t)
        predicted = self.counts.sum(axis=1)
        self.portion_label.setText(f"{self.portion_value:.0%}")
        for c in range(len(CLASS_NAMES)):
            s = self.sliders[c]
            s.blockSignals(True)  # napari style: showing the model moves no slider callback
            s.setValue(int(np.ceil(t[c] * 255 - 1e-6)))
            s.setEnabled(bool(predicted[c] > 0))
            s.blockSignals(False)
            mark = "*" if c in self.overrides else ""
            self.values[c].setText(f"{t[c]:.2f}{mark}")
            self.kept[c].setText(f"{int(kept[c])}/{int(predicted[c])}" if predicted[c] else "absent")
            self.names[c].setEnabled(bool(predicted[c] > 0))
        total = predicted.sum()
        self.total_label.setText(f"kept {int(kept.sum())} of {int(total)} predicted pixels "
                                 f"({kept.sum() / max(total, 1):.0%}); * = your override")
        self._draw_hist()
        self.thresholds_changed.emit(t)

    def _draw_hist(self) -> None:
        c = self.selected
        edges = np.arange(257) / 255.0 - 0.5 / 255
        self.hist_curve.setData(edges, self.counts[c])
        self.hist_line.blockSignals(True)
        self.hist_line.setValue(float(self.thresholds()[c]))
        self.hist_line.blockSignals(False)
        self.hist_plot.setTitle(f"{CLASS_NAMES[c]}: confidence of its predicted pixels", size="9pt")
