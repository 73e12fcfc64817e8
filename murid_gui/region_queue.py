""""Regions to check": one queue of a round's regions, worst RIPU score first, walked by key.

Selecting a region shows its image, outlines the region and zooms to it. Keys (while the queue
has the focus): a digit assigns class 0..9 (Shift+digit: 10..18; the class box picks any), V or
Return accepts the pseudo-label as verified, I marks the region ignore; the next region follows.
A region action changes the canvas's edit map through the review's undo history (Ctrl+Z undoes
it, also after the queue has moved on to another image, which is shown again) and is saved with
the image's edit, so it reaches the next round and the distillation at full
weight (murid_engine.regions.actions). The queue is read off the GUI thread, memory-mapped,
and shown through a lazy model: a 3,000-image round's ~1.5 M rows cost nothing to list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from murid_engine.errors import UserError
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import Project
from murid_engine.regions.actions import Action, apply_action, verified_pixels
from murid_engine.regions.scoring import RoundRegions

from .class_legend import swatch
from .column_model import ColumnTableModel, fit_columns

COLUMNS = ("image", "region", "score", "pixels", "done")


@dataclass(frozen=True)
class RegionStep:
    """The tag of a region action in the review's undo history."""
    round: int | None
    row: int  # the queue row acted on
    label: str  # what the row shows as done
    before: str | None  # what it showed before (None: not done)


class QueueModel(ColumnTableModel):
    """Rows read from the memory-mapped queue when shown, never copied into Qt items."""

    columns = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self.regions: RoundRegions | None = None
        self.done: dict[int, str] = {}

    def set_regions(self, regions: RoundRegions | None) -> None:
        self.beginResetModel()
        self.regions, self.done = regions, {}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if self.regions is None or parent.isValid() else len(self.regions.queue)

    def data(self, index, role=Qt.DisplayRole):
        if self.regions is None:
            return None
        col = index.column()
        if role == Qt.TextAlignmentRole and 0 < col < len(COLUMNS) - 1:  # numbers, as in the image list
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role not in (Qt.DisplayRole, Qt.ToolTipRole):
            return None
        row = self.regions.queue[index.row()]
        if role == Qt.ToolTipRole:  # the full stem, however narrow the column
            return self.regions.stems[int(row["image"])] if col == 0 else None
        if col == 0:
            return self.regions.stems[int(row["image"])]
        if col == 1:
            return int(row["region"])
        if col == 2:
            return f"{float(row['score']):.3f}"
        if col == 3:
            return int(row["pixels"])
        return self.done.get(index.row(), "")

    def mark(self, row: int, text: str | None) -> None:
        """Show what was done to a region (None: nothing, as after an undo)."""
        if text is None:
            self.done.pop(row, None)
        else:
            self.done[row] = text
        i = self.index(row, len(COLUMNS) - 1)
        self.dataChanged.emit(i, i)


class RegionQueue(QWidget):
    """The queue beside the image list; `review` is the ReviewView it drives."""

    loaded = Signal(object)  # (round, RoundRegions | str error, verified counts, total pixels)

    def __init__(self, review, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.review = review
        self.round: int | None = None
        self.regions: RoundRegions | None = None
        self.verified: dict[str, int] = {}
        self.total_pixels = 0
        self._map_stem: str | None = None
        self._map: np.ndarray | None = None
        self.model = QueueModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)  # no per-row sizing
        fit_columns(self.table)  # stems elide in the middle, as in the image list
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self.select(cur.row()))
        self.summary = QLabel("no round")
        self.summary.setWordWrap(True)
        self.class_box = QComboBox()
        # Narrow: the queue shares the Review view's left column with the image list.
        self.class_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.class_box.setMinimumContentsLength(4)
        for c, name in enumerate(CLASS_NAMES):
            self.class_box.addItem(swatch(c), f"{c % 10 if c < 10 else 'Shift+' + str(c - 10)}  {name}", c)
        assign = QPushButton("Assign")
        assign.setToolTip("give the whole region the chosen class (digit keys: classes 0-9, Shift+digit: 10-18)")
        assign.clicked.connect(lambda _=False: self.act(Action.ASSIGN, int(self.class_box.currentData())))
        accept = QPushButton("Accept")
        accept.setToolTip("the pseudo-label of the region is right: train on it at full weight")
        accept.clicked.connect(lambda _=False: self.act(Action.ACCEPT))
        ignore = QPushButton("Ignore")
        accept.setToolTip(accept.toolTip() + " (V or Return)")
        ignore.setToolTip("do not train on the region (I)")
        ignore.clicked.connect(lambda _=False: self.act(Action.IGNORE))
        buttons = QHBoxLayout()
        buttons.addWidget(self.class_box, 1)
        for b in (assign, accept, ignore):
            b.setMinimumWidth(10)
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("#FFFF00", width=2, cosmetic=True), connect="finite")
        self.outline.setZValue(20)
        self.review.canvas.box.addItem(self.outline, ignoreBounds=True)
        self._pending_row: int | None = None
        self.loaded.connect(self._on_loaded)
        self.review.image_shown.connect(self._on_image_shown)
        self.review.canvas.edited.connect(self.refresh_counts)  # brush strokes, undo and redo too
        self.review.canvas.step_restored.connect(self._on_step_restored)
        self._keys()

    def _keys(self) -> None:
        bindings: list[tuple[str, Callable[[], None]]] = []
        for d in range(10):
            bindings.append((str(d), lambda c=d: self.act(Action.ASSIGN, c)))
            if d + 10 < len(CLASS_NAMES):
                bindings.append((f"Shift+{d}", lambda c=d + 10: self.act(Action.ASSIGN, c)))
        bindings += [("V", lambda: self.act(Action.ACCEPT)), ("Return", lambda: self.act(Action.ACCEPT)),
                     ("I", lambda: self.act(Action.IGNORE))]
        for key, slot in bindings:
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            action.triggered.connect(lambda _=False, s=slot: s())
            self.addAction(action)

    # ------------------------------------------------------------------ loading (off the GUI thread)
    def load(self, project: Project, r: int) -> None:
        """Read round r's regions on the review's reader thread (a thread of its own would make
        the GUI thread wait for it to start while the reader holds the GIL)."""
        self.round, self.regions, self._map_stem, self._map = r, None, None, None
        self.model.set_regions(None)
        self.outline.setData([], [])
        self.summary.setText(f"loading the regions of round {r} …")
        n = project.config.model.num_classes

        def work() -> tuple:
            try:
                regions = RoundRegions.open(project.round_dir(r))
                verified = {s: verified_pixels(project.load_edit(s), n) for s in project.edited_stems()}
                return r, regions, verified, int(regions.queue["pixels"].sum())
            except (UserError, OSError, ValueError) as exc:
                return r, str(exc), {}, 0

        self.review.reader.read("regions", work, self.loaded.emit)

    def _on_loaded(self, payload) -> None:
        r, regions, verified, total = payload
        if r != self.round:
            return  # a later round was chosen meanwhile
        if isinstance(regions, str):
            self.summary.setText(regions)
            return
        self.regions, self.verified, self.total_pixels = regions, verified, total
        self.model.set_regions(regions)
        self._update_summary()

    def _update_summary(self) -> None:
        done = sum(self.verified.values())
        share = done / self.total_pixels if self.total_pixels else 0.0
        self.summary.setText(f"{len(self.model.done)} of {self.model.rowCount()} regions checked · "
                             f"{done} pixels corrected or verified ({share:.2%} of the round)")

    # ------------------------------------------------------------------ one region
    def region_map(self, stem: str) -> np.ndarray:
        if stem != self._map_stem:
            self._map, self._map_stem = self.regions.region_map(stem), stem
        return self._map

    def current_row(self) -> int:
        return self.table.currentIndex().row()

    def select(self, row: int) -> None:
        """Show the region's image, outline the region and zoom to it."""
        if self.regions is None or not 0 <= row < len(self.regions.queue):
            return
        if self.current_row() != row:
            self.table.selectRow(row)  # comes back here through currentRowChanged
            return
        stem, region = self.regions.entry(row)
        if self.review.stem != stem or self.review.pred is None:
            self._pending_row = row  # outlined when the image (read off the GUI thread) is shown
            self.review.show_image(stem)
            return
        self._show_region(row)

    def _on_image_shown(self, stem: str, region_map) -> None:
        if region_map is not None and self.regions is not None and self.round == self.review.round:
            self._map, self._map_stem = region_map, stem  # read with the image, on the reader thread
        row, self._pending_row = self._pending_row, None
        if row is not None and self.regions is not None and row == self.current_row() \
                and self.regions.entry(row)[0] == stem:
            self._show_region(row)

    def _show_region(self, row: int) -> None:
        stem, region = self.regions.entry(row)
        rmap = self.region_map(stem)
        if rmap.shape != self.review.pred.shape:
            self.summary.setText(f"the regions of {stem} do not match its pseudo-label's size")
            return
        self._outline(rmap == region)

    def _outline(self, mask: np.ndarray) -> None:
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if not len(ys):
            self.outline.setData([], [])
            return
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        crop = np.ascontiguousarray(mask[y0:y1, x0:x1], np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        px, py = [], []
        for c in contours:  # pixel centres; NaN separates the contours of one region
            pts = c[:, 0, :].astype(float)
            px += [*(pts[:, 0] + x0 + 0.5), pts[0, 0] + x0 + 0.5, np.nan]
            py += [*(pts[:, 1] + y0 + 0.5), pts[0, 1] + y0 + 0.5, np.nan]
        self.outline.setData(np.array(px), np.array(py))
        pad = max(x1 - x0, y1 - y0)  # the region and as much around it
        self.review.canvas.box.setRange(QRectF(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad),
                                        padding=0)

    def act(self, action: Action, class_id: int | None = None) -> bool:
        """Do `action` on the selected region through the canvas's undo history; next region."""
        row = self.current_row()
        canvas = self.review.canvas
        if self.regions is None or row < 0 or canvas.edit is None or self.review.read_only:
            return False
        stem, region = self.regions.entry(row)
        if self.review.stem != stem:
            return False
        mask = self.region_map(stem) == region
        label = CLASS_NAMES[class_id] if action is Action.ASSIGN else action.value
        step = RegionStep(self.round, row, label, before=self.model.done.get(row))
        canvas.history.push(canvas.edit, stem, tag=step)
        canvas.edit = apply_action(canvas.edit, mask, action, class_id=class_id, pred=self.review.pred)
        canvas.dirty = True
        canvas.redraw()
        canvas.end_stroke()  # history buttons and the image list's edited count follow
        self.verified[stem] = verified_pixels(canvas.edit, len(CLASS_NAMES))
        self.model.mark(row, label)
        self._update_summary()
        if row + 1 < self.model.rowCount():
            self.select(row + 1)
        return True

    def _on_step_restored(self, tag, undone: bool) -> None:
        """A region action undone (its region shown again, unmarked) or redone (marked again)."""
        if not isinstance(tag, RegionStep) or tag.round != self.round or self.regions is None:
            return
        self.model.mark(tag.row, tag.before if undone else tag.label)
        self._update_summary()
        if undone:
            self.select(tag.row)

    def refresh_counts(self) -> None:
        """After undo/redo: the current image's verified pixels from the canvas."""
        stem, canvas = self.review.stem, self.review.canvas
        if stem is not None and canvas.edit is not None and self.regions is not None:
            self.verified[stem] = verified_pixels(canvas.edit, len(CLASS_NAMES))
            self._update_summary()
