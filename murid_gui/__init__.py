"""MURID Studio desktop app: PySide6 + pyqtgraph views over the engine; owns no training logic."""
