"""One val image as the error browser shows it: image, ground truth, each model's prediction
and error map in a linked grid, and the image's own IoU per class (no file reads: the bundle
arrives from the reader thread)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from murid_engine.error_analysis import CORRECT, VOID, WRONG, ImageErrors, per_image_iou, per_image_miou
from murid_engine.labels import CLASS_NAMES, NUM_CLASSES

from .class_legend import swatch
from .theme import label_image_item, label_lut, set_label_image

TITLES = {"source_only": "source-only", "teacher": "teacher", "student": "student"}
WRONG_RGB = (255, 32, 80)  # a red no class of the Cityscapes palette uses
VOID_RGB = (128, 128, 128)  # neutral: void pixels are not scored
DIM = 0.35  # correct pixels show the image at this brightness, so the wrong ones stand out


def error_lut() -> np.ndarray:
    """(256, 4) RGBA for error maps: correct transparent (the dimmed image shows), wrong red, void grey."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[WRONG] = (*WRONG_RGB, 255)
    lut[VOID] = (*VOID_RGB, 255)
    lut[CORRECT] = (0, 0, 0, 0)
    return lut


def dimmed_grey(rgb: np.ndarray) -> np.ndarray:
    grey = rgb.astype(np.float32).mean(axis=2) * DIM
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def _pct(v: float) -> str:
    return "—" if np.isnan(v) else f"{100 * float(v):.1f}"


class _Title(pg.LabelItem):
    """A panel title that asks for no width: every column is as wide as the others, so the
    linked panels (one view range) show the image at one size whatever the titles say."""

    def updateMin(self) -> None:  # noqa: N802 - pyqtgraph's name
        super().updateMin()
        self.setMinimumWidth(0)
        self._sizeHint[Qt.SizeHint.MinimumSize] = (0, self._sizeHint[Qt.SizeHint.MinimumSize][1])
        self._sizeHint[Qt.SizeHint.PreferredSize] = (0, self._sizeHint[Qt.SizeHint.PreferredSize][1])
        self.updateGeometry()


class ErrorPanels(QWidget):
    """The grid (row 1: image and predictions; row 2: ground truth and error maps) and the IoU table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models: tuple[str, ...] = ()
        self.shown: ImageErrors | None = None
        self.view = pg.GraphicsLayoutWidget()
        self.view.ci.layout.setSpacing(2)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.gt = label_image_item()
        self.predictions: dict[str, pg.ImageItem] = {}
        self.error_bases: dict[str, pg.ImageItem] = {}
        self.errors: dict[str, pg.ImageItem] = {}
        self.titles: dict[str, pg.LabelItem] = {}
        self.error_titles: dict[str, pg.LabelItem] = {}
        self.boxes: list[pg.ViewBox] = []
        legend = QLabel(
            f"error maps: <span style='color: rgb{WRONG_RGB}'>■</span> wrong · "
            f"<span style='color: rgb{VOID_RGB}'>■</span> void (not scored) · "
            "correct pixels show the image, dimmed")
        legend.setTextFormat(Qt.RichText)
        self.table = QTableWidget(0, 2)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.view, 1)
        tl.addWidget(legend)
        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(self.table)
        split.setSizes([520, 220])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

    def set_models(self, models: tuple[str, ...]) -> None:
        """Rebuild the grid for these models (one column each, after the image / label column)."""
        if models == self.models and self.boxes:
            return
        self.models = models
        self.view.clear()
        self.predictions, self.error_bases, self.errors, self.boxes = {}, {}, {}, []
        self.titles, self.error_titles = {}, {}
        self._title("image", 0, 0)
        self._title("ground truth", 2, 0)
        self._box(1, 0, self.image)
        self._box(3, 0, self.gt)
        for col, m in enumerate(models, start=1):
            self.titles[m] = self._title(TITLES.get(m, m), 0, col)
            self.error_titles[m] = self._title(f"errors of the {TITLES.get(m, m)}", 2, col)
            self.predictions[m] = label_image_item()
            self._box(1, col, self.predictions[m])
            self.error_bases[m] = pg.ImageItem(axisOrder="row-major")
            self.errors[m] = label_image_item()
            self._box(3, col, self.error_bases[m], self.errors[m])
        self.table.setColumnCount(2 + len(models))
        self.table.setHorizontalHeaderLabels(["class", "label px"] + [f"{TITLES.get(m, m)} IoU" for m in models])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)

    def _title(self, text: str, row: int, col: int) -> pg.LabelItem:
        label = _Title(text)
        self.view.addItem(label, row=row, col=col)
        grid = self.view.ci.layout
        grid.setRowFixedHeight(row, 22)  # the images take the height, not the titles
        grid.setColumnStretchFactor(col, 1)
        return label

    def _box(self, row: int, col: int, *items: pg.ImageItem) -> None:
        box = self.view.addViewBox(row=row, col=col, lockAspect=True, invertY=True, defaultPadding=0)
        for item in items:
            box.addItem(item)
        if self.boxes:  # zoom and pan one, all follow
            box.setXLink(self.boxes[0])
            box.setYLink(self.boxes[0])
        else:
            box.sigResized.connect(lambda _box: self.fit())  # a new window size shows the whole image again
        self.boxes.append(box)

    def fit(self) -> None:
        """The whole image in every panel (they are linked: setting the first sets all)."""
        if self.shown is not None and self.boxes:
            h, w = self.shown.gt.shape
            self.boxes[0].setRange(QRectF(0, 0, w, h), padding=0)

    def clear(self) -> None:
        self.shown = None
        for item in [self.image, self.gt, *self.predictions.values(), *self.error_bases.values(),
                     *self.errors.values()]:
            item.clear()
        self.table.setRowCount(0)

    def show(self, bundle: ImageErrors, dimmed: np.ndarray, counts: dict[str, np.ndarray]) -> None:  # noqa: A003
        """Draw one image: `dimmed` is its dimmed grey copy (made off the GUI thread), `counts`
        each model's (K, K + 1) confusion counts on it (titles and table come from them)."""
        self.shown = bundle
        lut = label_lut()
        self.image.setImage(bundle.rgb, autoLevels=False, levels=(0, 255))
        set_label_image(self.gt, bundle.gt, lut)
        ious = {m: per_image_iou(counts[m]) for m in self.models}
        for m in self.models:
            set_label_image(self.predictions[m], bundle.predictions[m], lut)
            self.error_bases[m].setImage(dimmed, autoLevels=False, levels=(0, 255))
            set_label_image(self.errors[m], bundle.errors[m], error_lut())
            scored = int(counts[m].sum())
            wrong = scored - int(np.trace(counts[m][:, :NUM_CLASSES]))
            self.titles[m].setText(f"{TITLES.get(m, m)}: {_pct(per_image_miou(counts[m]))} mIoU")
            self.error_titles[m].setText(f"errors: {100 * wrong / max(scored, 1):.0f}% wrong")
        self.fit()
        label_px = counts[self.models[0]].sum(axis=1) if self.models else np.zeros(NUM_CLASSES)
        self._fill_table(label_px, ious)

    def _fill_table(self, label_px: np.ndarray, ious: dict[str, np.ndarray]) -> None:
        """Classes in the label or any prediction, largest in the label first."""
        present = [c for c in range(NUM_CLASSES)
                   if label_px[c] > 0 or any(not np.isnan(ious[m][c]) for m in self.models)]
        present.sort(key=lambda c: (-label_px[c], c))
        labelled = max(int(label_px.sum()), 1)
        self.table.setRowCount(len(present))
        for r, c in enumerate(present):
            self.table.setItem(r, 0, QTableWidgetItem(swatch(c), CLASS_NAMES[c]))
            cells = [f"{100 * label_px[c] / labelled:.1f}%"] + [_pct(ious[m][c]) for m in self.models]
            for col, text in enumerate(cells, start=1):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, col, item)
