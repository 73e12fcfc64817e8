"""A round's images in a table sortable by mean confidence, kept fraction and disagreement."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from murid_engine.curriculum.round_summary import ImageSummary

COLUMNS = ("image", "mean conf.", "kept", "disagree", "edited px")
KEYS = (None, "mean_confidence", "kept_fraction", "disagreement", "edited_pixels")  # ImageSummary fields
SORTS = (("least confident first", 1, Qt.AscendingOrder), ("least kept first", 2, Qt.AscendingOrder),
         ("most disagreement first", 3, Qt.DescendingOrder), ("most edited first", 4, Qt.DescendingOrder),
         ("by name", 0, Qt.AscendingOrder))


class _Number(QTableWidgetItem):
    """Sorts by its value, shows it formatted; None (unknown) sorts last."""

    def __init__(self, value, text: str) -> None:
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)

    def __lt__(self, other) -> bool:  # noqa: D105
        a, b = self.value, getattr(other, "value", None)
        if a is None or b is None:
            return a is not None
        return a < b


class ImageList(QWidget):
    image_selected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sort = QComboBox()
        self.sort.addItems([s[0] for s in SORTS])
        self.sort.currentIndexChanged.connect(self.apply_sort)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        # A stem's start (Cityscapes: the city) and its end (the frame) both tell images apart.
        self.table.setTextElideMode(Qt.ElideMiddle)
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._on_select)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.sort)
        layout.addWidget(self.table, 1)

    def load(self, images: Mapping[str, ImageSummary], paths: Mapping[str, str] | None = None) -> None:
        """One row per stem; `paths` (stem -> image file) become the name cells' tooltips."""
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(images))
        paths = paths or {}
        for row, (stem, stats) in enumerate(images.items()):
            name = QTableWidgetItem(stem)
            name.setToolTip(f"{stem}\n{paths[stem]}" if stem in paths else stem)
            self.table.setItem(row, 0, name)
            for col, key in enumerate(KEYS[1:], start=1):
                v = getattr(stats, key)
                text = "—" if v is None else (f"{v:.0f}" if key == "edited_pixels" else f"{v:.3f}")
                self.table.setItem(row, col, _Number(v, text))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), 240))
        self.table.blockSignals(False)
        self.apply_sort()

    def apply_sort(self) -> None:
        _, col, order = SORTS[self.sort.currentIndex()]
        self.table.sortItems(col, order)

    def stems(self) -> list[str]:
        """The stems in the order shown."""
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

    def current(self) -> str | None:
        row = self.table.currentRow()
        return self.table.item(row, 0).text() if row >= 0 else None

    def select(self, stem: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == stem:
                self.table.selectRow(r)
                return

    def set_edited(self, stem: str, pixels: int) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == stem:
                self.table.blockSignals(True)  # a re-sort must not select another image
                self.table.setSortingEnabled(False)
                self.table.setItem(r, 4, _Number(pixels, f"{pixels}"))
                self.table.setSortingEnabled(True)
                self.table.blockSignals(False)
                return

    def _on_select(self) -> None:
        stem = self.current()
        if stem is not None:
            self.image_selected.emit(stem)
