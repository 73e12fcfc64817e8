"""Undo / redo of an image's edit map: a snapshot before each stroke (pure NumPy, no Qt)."""

from __future__ import annotations

import numpy as np

MAX_STEPS = 50


class EditHistory:
    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        self.max_steps = max_steps
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    def push(self, before: np.ndarray) -> None:
        """Record the state before a stroke; a new stroke forgets what could be redone."""
        self._undo.append(before.copy())
        if len(self._undo) > self.max_steps:
            del self._undo[0]
        self._redo.clear()

    def undo(self, current: np.ndarray) -> np.ndarray | None:
        if not self._undo:
            return None
        self._redo.append(current.copy())
        return self._undo.pop()

    def redo(self, current: np.ndarray) -> np.ndarray | None:
        if not self._redo:
            return None
        self._undo.append(current.copy())
        return self._redo.pop()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)
