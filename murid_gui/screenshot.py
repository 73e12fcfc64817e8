"""Render a window offscreen to a PNG (``python app.py --screenshot FILE``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication, QWidget


def save_screenshot(widget: QWidget, path: Path, size: tuple[int, int] = (1280, 800)) -> Path:
    """Show `widget` at `size`, let layouts and plots settle, and grab it into `path`."""
    widget.resize(*size)
    widget.show()
    app = QApplication.instance()
    for _ in range(5):  # layouts, then pyqtgraph's deferred view-range updates
        app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"could not write the screenshot {path}")
    return path
