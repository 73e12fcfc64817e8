"""Loss curves: each named loss smoothed (EMA), its raw values drawn faintly; x = iterations or time."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from murid_engine.records import LossRecord, Record

COLORS = ["#4FC3F7", "#FFB74D", "#81C784", "#E57373", "#BA68C8", "#FFF176", "#A1887F", "#90A4AE"]
MAX_DRAWN = 4000
PREMADE = 8  # curve pairs made while the app is idle, so that a first project does not wait for them
SMOOTHING = 0.9  # EMA weight of the past
GRID_COLOR = (128, 128, 128, 45)  # faint on the dark and the light theme
# Live losses are drawn at most this often: a redraw is ~8 ms of GUI time (offscreen, 760×330),
# and training on the same cores stretches that into a stall; twice a second reads as live.
REDRAW_S = 0.5
LEFT_AXIS_WIDTH = 48  # pixels: "0.0001" in the default font


class _Series:
    def __init__(self) -> None:
        self.step: list[float] = []
        self.time: list[float] = []
        self.raw: list[float] = []
        self.smooth: list[float] = []
        self._ema = 0.0
        self._drawn: dict[bool, tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def add(self, step: float, t: float, value: float) -> None:
        # Debiased EMA (as TensorBoard's smoothing): no pull towards 0 at the start.
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
        self.step.append(step)
        self.time.append(t)
        self.raw.append(value)
        self.smooth.append(self._ema / (1 - SMOOTHING ** len(self.raw)))

    def drawn(self, by_time: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, raw and smoothed values as drawn: at most MAX_DRAWN (+ the last) points per curve.

        A plot a thousand pixels wide shows no more: a long run's 50,000 rows are drawn as every
        k-th one (and the last). Kept until the series grows, so arrays made off the GUI thread
        (LossHistory.prepare) leave the GUI thread only setData on a few thousand points.
        """
        cached = self._drawn.get(by_time)
        if cached is not None and cached[0] == len(self.raw):
            return cached[1]
        arrays = self._decimate(by_time)
        self._drawn[by_time] = (len(self.raw), arrays)
        return arrays

    def _decimate(self, by_time: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(self.time if by_time else self.step, dtype=float)
        n = len(x)
        keep = slice(None) if n <= MAX_DRAWN else np.append(np.arange(0, n, -(-n // MAX_DRAWN)), n - 1)
        return x[keep], np.asarray(self.raw, dtype=float)[keep], np.asarray(self.smooth, dtype=float)[keep]


class LossHistory:
    """Every named loss's series on one step axis (stages follow one another); no Qt.

    Built from metrics.jsonl off the GUI thread (a long run has tens of thousands of records),
    then handed to the plot, which appends the live losses to it.
    """

    def __init__(self) -> None:
        self.series: dict[str, _Series] = {}
        self.stage: str | None = None
        self.offset = 0  # global step of the current stage's iteration 0
        self.last_step = 0

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> LossHistory:
        """The loss records among a run's typed metrics records (murid_engine.records)."""
        history = cls()
        for r in records:
            if isinstance(r, LossRecord):
                history.add(r.stage, r.iteration, r.time_s, r.values)
        return history

    def add(self, stage: str, iteration: int, t: float, values: dict[str, float]) -> set[str]:
        if stage != self.stage:
            self.stage = stage
            self.offset = self.last_step  # stages follow one another on one axis
        step = self.offset + iteration
        self.last_step = max(self.last_step, step)
        for name, v in values.items():
            if name not in self.series:
                self.series[name] = _Series()
            self.series[name].add(step, t, float(v))
        return set(values)

    def prepare(self) -> LossHistory:
        """Make the drawn arrays of every series now (on the reader thread, not the GUI's)."""
        for s in self.series.values():
            s.drawn(False)
            s.drawn(True)
        return self

    def last_time(self) -> float:
        return max([s.time[-1] for s in self.series.values() if s.time], default=0.0)


class LossPlot(QWidget):
    """Append losses as they come (``add``); the history of a project loads from its metrics."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "loss")
        # A GridItem, not the axes' grid (showGrid): the axes draw theirs with alpha through a
        # recorded QPicture on every repaint, ~22 of a live repaint's ~31 ms on the GUI thread
        # (measured offscreen, 760×330, 4 losses); this one costs ~1 ms of it.
        grid = pg.GridItem(textPen=None)
        grid.setPen(pg.mkPen(GRID_COLOR, width=1))
        self.plot.addItem(grid, ignoreBounds=True)
        # A long run's tens of thousands of points: draw what the pixels can show (peaks kept).
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.x_axis = QComboBox()
        self.x_axis.addItems(["iterations", "time (s)"])
        self.x_axis.currentIndexChanged.connect(self._redraw_all)
        self.show_raw = QCheckBox("raw")
        self.show_raw.setChecked(True)
        self.show_raw.toggled.connect(self._redraw_all)
        self.log_y = QCheckBox("log y")
        self.log_y.toggled.connect(lambda on: self.plot.setLogMode(y=on))
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Losses — x:"))
        bar.addWidget(self.x_axis)
        bar.addWidget(self.show_raw)
        bar.addWidget(self.log_y)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)
        # A fixed width: tick labels that grow ("0.9" -> "1.25") would otherwise re-lay the
        # whole plot out, and paint it twice, in the turn a live loss arrives.
        self.plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self._changed: set[str] = set()  # losses added since the plot was last drawn
        self._last_redraw = -REDRAW_S
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self._redraw_changed)
        self._blank: list[pg.PlotDataItem] = []  # made ahead, not yet named (see _premake)
        self.clear()
        self._premaker = QTimer(self)  # a child: it dies with the plot
        self._premaker.timeout.connect(self._premake)
        self._premaker.start(0)

    def _premake(self) -> None:
        """Make one curve per event-loop turn until PREMADE pairs wait: a pyqtgraph curve costs
        ~10 ms of GUI time, which would otherwise be spent when a project's history arrives."""
        self._blank.append(self.plot.plot())
        if len(self._blank) >= 2 * PREMADE:
            self._premaker.stop()

    def clear(self) -> None:
        # The curves stay, emptied, for the next project's losses of the same names: making a
        # pyqtgraph curve costs ~10 ms of GUI time (hundreds of signal connections).
        self._spare: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {
            **getattr(self, "_spare", {}), **getattr(self, "curves", {})}
        self._legend_names: set[str] = getattr(self, "_legend_names", set())
        for raw, smooth in self._spare.values():  # their legend entries stay until set_history
            raw.setData([], [])
            smooth.setData([], [])
        self.history = LossHistory()
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._time_base = 0.0  # seconds of history before this session's live job
        self._t0 = time.monotonic()
        self._redraw_all()

    # ------------------------------------------------------------------ input
    @property
    def series(self) -> dict[str, _Series]:
        return self.history.series

    def load_history(self, records: Iterable[Record]) -> None:
        """The loss records among typed metrics records (see set_history for a built history)."""
        self.set_history(LossHistory.from_records(records))

    def set_history(self, history: LossHistory) -> None:
        """Show a history built off the GUI thread; live losses are appended to it."""
        self.history = history
        self._time_base = history.last_time()
        self._redraw_all()
        self._prune_legend()

    def _prune_legend(self) -> None:
        """The legend names the curves in use only (spare ones keep their items, not an entry)."""
        for name, (_, smooth) in self._spare.items():
            if name in self._legend_names:
                self.legend.removeItem(smooth)
                self._legend_names.discard(name)

    def start_live(self) -> None:
        """A job begins: live times continue after the history's last time."""
        self._time_base = self.history.last_time()
        self._t0 = time.monotonic()
        self._prune_legend()

    def add_batch(self, events: list) -> None:
        """A batch of engine Losses events (coalesced by the worker's sink): drawn at once when
        the plot was last drawn REDRAW_S ago or more, else at that moment (one redraw for all)."""
        t = self._time_base + time.monotonic() - self._t0
        for e in events:
            self._changed |= self._add(e.stage, e.iteration, t, e.values)
        if self._redraw_timer.isActive():
            return
        wait_s = self._last_redraw + REDRAW_S - time.monotonic()
        if wait_s <= 0:
            self._redraw_changed()
        else:
            self._redraw_timer.start(int(wait_s * 1000) + 1)

    def _redraw_changed(self) -> None:
        self._last_redraw = time.monotonic()
        changed, self._changed = self._changed, set()
        for name in changed & set(self.series):  # a history set since may lack some
            self._redraw(name)

    def _add(self, stage: str, iteration: int, t: float, values: dict[str, float]) -> set[str]:
        return self.history.add(stage, iteration, t, values)

    # ------------------------------------------------------------------ drawing
    def _curve(self, name: str) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        if name not in self.curves and name in self._spare:
            self.curves[name] = self._spare.pop(name)
            if name not in self._legend_names:
                self.legend.addItem(self.curves[name][1], name)
                self._legend_names.add(name)
        if name not in self.curves:
            color = pg.mkColor(COLORS[len(self.curves) % len(COLORS)])
            faint = pg.mkColor(color)
            faint.setAlpha(60)
            if len(self._blank) >= 2:  # made ahead: give them their pens and a legend entry
                smooth, raw = self._blank.pop(), self._blank.pop()  # the later-made one draws on top
                raw.setPen(pg.mkPen(faint, width=1))
                smooth.setPen(pg.mkPen(color, width=2))
                self.legend.addItem(smooth, name)
            else:
                raw = self.plot.plot(pen=pg.mkPen(faint, width=1))
                smooth = self.plot.plot(pen=pg.mkPen(color, width=2), name=name)  # its legend entry
            self.curves[name] = (raw, smooth)
            self._legend_names.add(name)
        return self.curves[name]

    def _redraw(self, name: str) -> None:
        x, raw_values, smooth_values = self.series[name].drawn(self.x_axis.currentIndex() == 1)
        raw, smooth = self._curve(name)
        if self.show_raw.isChecked():
            raw.setData(x, raw_values)
        else:
            raw.setData([], [])
        smooth.setData(x, smooth_values)

    def _redraw_all(self) -> None:
        label = "time (s)" if self.x_axis.currentIndex() == 1 else "iteration"
        if label != getattr(self, "_x_label", None):  # setting it again re-lays the axis out
            self.plot.setLabel("bottom", label)
            self._x_label = label
        for name in getattr(self, "series", {}):
            self._redraw(name)
