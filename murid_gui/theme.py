"""Looks: the qdarkstyle dark theme (default) or its light alternative, and label-map colours.

Label maps are drawn as uint8 data through an explicit 256-entry lookup table with explicit
levels (0, 255): no auto-levels and no auto-downsampling (DESIGN §6: averaging invents class ids
at boundaries). Entries past the classes (254 = painted ignore, 255 = ignore) are transparent.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

from murid_engine.labels import NUM_CLASSES, PALETTE

THEMES = ("dark", "light")
LEVELS = (0, 255)


COLORS = {"dark": ("#19232D", "#DFE1E2"), "light": ("#FAFAFA", "#19232D")}  # background, foreground


def restyle_plots(root) -> None:
    """Give the pyqtgraph widgets under `root` the current theme's colours (made before a switch)."""
    bg, fg = COLORS[current_theme()]
    for view in root.findChildren(pg.GraphicsView):
        view.setBackground(bg)
        for item in view.scene().items():
            if isinstance(item, pg.AxisItem):
                item.setPen(fg)
                item.setTextPen(fg)
            elif isinstance(item, pg.LegendItem):
                item.setLabelTextColor(fg)
            elif isinstance(item, pg.LabelItem) and item.text:
                item.setText(item.text, color=fg)


def apply_theme(app: QApplication, theme: str = "dark") -> None:
    """Style the whole app (qdarkstyle dark or light) and pyqtgraph's plots to match."""
    import qdarkstyle

    if theme not in THEMES:
        raise ValueError(f"unknown theme '{theme}' (choose from {', '.join(THEMES)})")
    palette = qdarkstyle.DarkPalette if theme == "dark" else qdarkstyle.LightPalette
    app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6", palette=palette))
    app.setProperty("murid_theme", theme)
    bg, fg = COLORS[theme]
    pg.setConfigOptions(background=bg, foreground=fg, antialias=False)  # antialiasing costs paint time


def current_theme() -> str:
    app = QApplication.instance()
    return (app.property("murid_theme") if app is not None else None) or "dark"


def label_lut(visible: np.ndarray | None = None, alpha: int = 255) -> np.ndarray:
    """(256, 4) uint8 RGBA table: class colours (hidden classes transparent), the rest transparent."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:NUM_CLASSES, :3] = PALETTE
    lut[:NUM_CLASSES, 3] = alpha
    if visible is not None:
        lut[:NUM_CLASSES][~np.asarray(visible, dtype=bool)] = 0
    return lut


def confidence_lut() -> np.ndarray:
    """(256, 4) uint8 heat map for confidence levels: dark blue (unsure) to yellow (sure)."""
    cmap = pg.colormap.get("viridis")
    return cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)


def label_image_item(**kwargs) -> pg.ImageItem:
    """An ImageItem set up for label maps: explicit levels, no auto-downsampling."""
    item = pg.ImageItem(axisOrder="row-major", autoDownsample=False, **kwargs)
    return item


def set_label_image(item: pg.ImageItem, data: np.ndarray, lut: np.ndarray) -> None:
    """Show uint8 `data` through `lut` with levels (0, 255): never auto-levelled."""
    item.setImage(np.ascontiguousarray(data, dtype=np.uint8), autoLevels=False, levels=LEVELS,
                  lut=lut, autoDownsample=False)
