"""The review canvas: image, pseudo-label overlay, confidence heat map, ground truth, compare,
and the brush / eraser / fill-relabel tools that paint the user's edit map.

Label maps are uint8 ImageItems with an explicit lookup table and levels (0, 255), never
auto-levelled or auto-downsampled. The edit map follows the engine's convention: 255 = not
edited, 254 = painted ignore, else a painted train id.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGraphicsEllipseItem, QHBoxLayout, QWidget

from murid_engine.project import EDIT_IGNORE, EDIT_NONE

from .edit_history import EditHistory, Step
from .theme import confidence_lut, label_image_item, label_lut, set_label_image

MODES = ("overlay", "confidence", "ground truth", "compare")
TOOLS = ("pan", "brush", "eraser", "fill")
IGNORE_RGBA = (0, 0, 0, 170)  # painted 'ignore' shows as a dark veil


class _PaintItem(pg.ImageItem):
    """The overlay item: forwards clicks and drags to the canvas while a painting tool is on."""

    def __init__(self, canvas: "LabelCanvas") -> None:
        super().__init__(axisOrder="row-major", autoDownsample=False)
        self.canvas = canvas

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        if self.canvas.tool == "pan" or ev.button() != Qt.LeftButton:
            ev.ignore()
            return
        ev.accept()
        self.canvas.begin_stroke(ev.pos())
        self.canvas.end_stroke()

    def mouseDragEvent(self, ev) -> None:  # noqa: N802
        if self.canvas.tool == "pan" or ev.button() != Qt.LeftButton:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            self.canvas.begin_stroke(ev.buttonDownPos())
        self.canvas.continue_stroke(ev.pos())
        if ev.isFinish():
            self.canvas.end_stroke()


class LabelCanvas(QWidget):
    edited = Signal()  # a stroke, undo or redo changed the edit map
    history_changed = Signal(bool, bool)  # can undo, can redo
    step_restored = Signal(object, bool)  # the restored step's tag, True for an undo (False: redo)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tool = "pan"
        self.paint_value = 0  # a train id, or EDIT_IGNORE
        self.brush_radius = 3
        self.mode = "overlay"
        self.opacity = 0.6
        self.visible = np.ones(19, dtype=bool)
        self.history = EditHistory()  # the review session's, across images (edit_history.py)
        self.stem: str | None = None  # the image shown
        self.image: np.ndarray | None = None
        self.labels: np.ndarray | None = None  # the round's labels under the current thresholds
        self.confidence: np.ndarray | None = None  # uint8 levels
        self.gt: np.ndarray | None = None
        self.edit: np.ndarray | None = None
        self.dirty = False
        self._last: tuple[int, int] | None = None

        self.left = pg.GraphicsLayoutWidget()
        self.right = pg.GraphicsLayoutWidget()
        self.box = self.left.addViewBox(lockAspect=True)
        self.box2 = self.right.addViewBox(lockAspect=True)
        for b in (self.box, self.box2):
            b.invertY(True)
        self.box2.setXLink(self.box)
        self.box2.setYLink(self.box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.conf_item = label_image_item()
        self.overlay = _PaintItem(self)
        self.image_item2 = pg.ImageItem(axisOrder="row-major")
        self.gt_item = label_image_item()
        self.box.addItem(self.image_item)
        self.box.addItem(self.conf_item)
        self.box.addItem(self.overlay)
        # The brush's footprint follows the mouse while the brush or the eraser is on.
        self.cursor = QGraphicsEllipseItem()
        self.cursor.setPen(pg.mkPen("#FFFFFF", width=1, cosmetic=True))
        self.cursor.setZValue(10)
        self.cursor.setVisible(False)
        self.box.addItem(self.cursor, ignoreBounds=True)
        self.left.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.box2.addItem(self.image_item2)
        self.box2.addItem(self.gt_item)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.left, 1)
        layout.addWidget(self.right, 1)
        self._conf_lut = confidence_lut()
        self._refresh_luts()
        self.set_mode("overlay")

    # ------------------------------------------------------------------ content
    def set_content(self, image: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                    gt: np.ndarray | None, edit: np.ndarray | None, stem: str | None = None) -> None:
        """Show an image; the undo history is kept (it spans images: clear it with the round)."""
        same_size = self.image is not None and self.image.shape == image.shape
        self.image, self.labels, self.confidence, self.gt = image, labels, confidence, gt
        self.stem = stem
        self.edit = edit.copy() if edit is not None else np.full(labels.shape, EDIT_NONE, np.uint8)
        self.dirty = False
        self.history_changed.emit(self.history.can_undo, self.history.can_redo)
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))
        self.image_item2.setImage(image, autoLevels=False, levels=(0, 255))
        set_label_image(self.conf_item, confidence, self._conf_lut)
        self._draw_gt()
        self.redraw()
        if not same_size:  # flipping through images of one size keeps the user's zoom
            self.box.autoRange(padding=0.01)

    def set_labels(self, labels: np.ndarray) -> None:
        """New thresholds: the kept labels changed (the edit stays on top)."""
        self.labels = labels
        self.redraw()

    def display(self) -> np.ndarray:
        """What the overlay shows and training will use: labels with the edit on top (254 = ignore)."""
        return np.where(self.edit == EDIT_NONE, self.labels, self.edit).astype(np.uint8)

    def redraw(self) -> None:
        if self.labels is None:
            return
        set_label_image(self.overlay, self.display(), self._lut)
        self.overlay.setOpacity(self.opacity if self.mode != "confidence" else 0.0)

    def _draw_gt(self) -> None:
        """The compare pane: ground truth where the target has labels, else the confidence."""
        if self.gt is not None:
            set_label_image(self.gt_item, self.gt, self._gt_lut)
        elif self.confidence is not None:
            set_label_image(self.gt_item, self.confidence, self._conf_lut)
        else:
            self.gt_item.clear()

    # ------------------------------------------------------------------ looks
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode}")
        self.mode = mode
        gt_mode = mode == "ground truth"
        self.right.setVisible(mode == "compare")
        self.gt_item.setOpacity(self.opacity if self.gt is not None else 1.0)
        self.conf_item.setVisible(mode == "confidence")
        self.overlay.setVisible(not gt_mode)
        # "ground truth" shows the labels where the pseudo-label was; compare puts them side by side.
        if gt_mode and self.gt is not None:
            set_label_image(self.conf_item, self.gt, self._gt_lut)
            self.conf_item.setOpacity(self.opacity)
            self.conf_item.setVisible(True)
        elif self.confidence is not None:
            set_label_image(self.conf_item, self.confidence, self._conf_lut)
            self.conf_item.setOpacity(1.0)
        self.redraw()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        if self.mode == "ground truth":
            self.conf_item.setOpacity(self.opacity)
        self.gt_item.setOpacity(self.opacity if self.gt is not None else 1.0)
        self.redraw()

    def set_visible_classes(self, visible: np.ndarray) -> None:
        self.visible = np.asarray(visible, dtype=bool).copy()
        self._refresh_luts()
        self._draw_gt()
        self.set_mode(self.mode)

    def _refresh_luts(self) -> None:
        self._lut = label_lut(self.visible)
        self._lut[EDIT_IGNORE] = IGNORE_RGBA
        self._gt_lut = label_lut(self.visible)

    # ------------------------------------------------------------------ tools
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool}")
        self.tool = tool
        self.box.setMouseEnabled(tool == "pan", tool == "pan")
        if tool not in ("brush", "eraser"):
            self.cursor.setVisible(False)

    def _on_mouse_moved(self, scene_pos) -> None:
        painting = self.tool in ("brush", "eraser") and self.edit is not None
        self.cursor.setVisible(painting and self.box.sceneBoundingRect().contains(scene_pos))
        if painting:
            p = self.box.mapSceneToView(scene_pos)
            r = self.brush_radius + 0.5
            x, y = np.floor(p.x()) + 0.5, np.floor(p.y()) + 0.5
            self.cursor.setRect(x - r, y - r, 2 * r, 2 * r)

    def _pixel(self, pos) -> tuple[int, int] | None:
        if self.edit is None:
            return None
        x, y = int(np.floor(pos.x())), int(np.floor(pos.y()))
        h, w = self.edit.shape
        return (min(max(x, 0), w - 1), min(max(y, 0), h - 1))

    def begin_stroke(self, pos) -> None:
        if self.edit is None:
            return
        self.history.push(self.edit, self.stem)
        self._last = None
        if self.tool == "fill":
            if (p := self._pixel(pos)) is not None:
                self.fill_at(*p)
        else:
            self.continue_stroke(pos)

    def continue_stroke(self, pos) -> None:
        if self.edit is None or self.tool not in ("brush", "eraser"):
            return
        p = self._pixel(pos)
        if p is None:
            return
        value = EDIT_NONE if self.tool == "eraser" else int(self.paint_value)
        self._stamp(self._last or p, p, value)
        self._last = p
        self.dirty = True
        self.redraw()

    def _stamp(self, a: tuple[int, int], b: tuple[int, int], value: int) -> None:
        """Every pixel within brush_radius of the segment a-b (no gaps in a fast stroke, no
        anti-aliasing: only `value` is written), computed on the segment's bounding box."""
        r = self.brush_radius
        h, w = self.edit.shape
        x0, x1 = max(min(a[0], b[0]) - r, 0), min(max(a[0], b[0]) + r, w - 1)
        y0, y1 = max(min(a[1], b[1]) - r, 0), min(max(a[1], b[1]) + r, h - 1)
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        dx, dy = b[0] - a[0], b[1] - a[1]
        t = np.clip(((xs - a[0]) * dx + (ys - a[1]) * dy) / max(dx * dx + dy * dy, 1), 0.0, 1.0)
        near = (xs - a[0] - t * dx) ** 2 + (ys - a[1] - t * dy) ** 2 <= r * r + 0.5
        self.edit[y0:y1 + 1, x0:x1 + 1][near] = value

    def fill_at(self, x: int, y: int) -> int:
        """Relabel the connected region of (x, y)'s shown label with the paint value; pixels changed."""
        shown = self.display()
        mask = np.zeros((shown.shape[0] + 2, shown.shape[1] + 2), np.uint8)
        cv2.floodFill(shown.copy(), mask, (x, y), 0, loDiff=0, upDiff=0,
                      flags=4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        region = mask[1:-1, 1:-1].astype(bool)
        self.edit[region] = int(self.paint_value)
        self.dirty = True
        self.redraw()
        return int(region.sum())

    def end_stroke(self) -> None:
        self._last = None
        self.history_changed.emit(self.history.can_undo, self.history.can_redo)
        self.edited.emit()

    def clear_history(self) -> None:
        self.history.clear()
        self.history_changed.emit(False, False)

    def undo(self) -> bool:
        """Undo the last step when it is the shown image's (ReviewView.undo handles the others)."""
        return self._restore(self.history.undo(self.edit, self.stem) if self.edit is not None else None, True)

    def redo(self) -> bool:
        return self._restore(self.history.redo(self.edit, self.stem) if self.edit is not None else None, False)

    def _restore(self, step: Step | None, undone: bool) -> bool:
        if step is None:
            return False
        self.edit = step.edit
        self.dirty = True
        self.redraw()
        self.history_changed.emit(self.history.can_undo, self.history.can_redo)
        self.edited.emit()
        self.step_restored.emit(step.tag, undone)
        return True
