"""A read-only table model with named columns: the part every list model here shares."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QHeaderView, QTableView

NUMBER_SAMPLE = "0.000"  # the widest number a value column shows


class ColumnTableModel(QAbstractTableModel):
    """Subclasses set `columns` (the header texts), optionally `column_tips` (a header's tooltip,
    the column's meaning in words), and give rowCount and data."""

    columns: tuple[str, ...] = ()
    column_tips: tuple[str, ...] = ()

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation != Qt.Horizontal:
            return None
        if role == Qt.DisplayRole:
            return self.columns[section]
        if role == Qt.ToolTipRole and section < len(self.column_tips):
            return self.column_tips[section]
        return None


def fit_columns(table: QTableView) -> None:
    """The name column takes the room left and elides in the middle; the value columns keep the
    width of their header or of a number, whichever is wider. Widths come from the font, not from
    the rows, so a 3,000-row list costs no more to lay out than a 3-row one."""
    header = table.horizontalHeader()
    header.setMinimumSectionSize(24)
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.Stretch)
    bold = QFont(header.font())
    bold.setBold(True)  # the theme draws header texts bold; measure them so
    metrics = QFontMetrics(bold)
    model = table.model()
    for col in range(1, model.columnCount()):
        text = str(model.headerData(col, Qt.Horizontal))
        header.setSectionResizeMode(col, QHeaderView.Fixed)
        header.resizeSection(col, max(metrics.horizontalAdvance(text), metrics.horizontalAdvance(NUMBER_SAMPLE)) + 10)
    # No sort arrow: it would take a narrow header's text; the lists' sort box names the order.
    header.setSortIndicatorShown(False)
    table.setTextElideMode(Qt.ElideMiddle)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
