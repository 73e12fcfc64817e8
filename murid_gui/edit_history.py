"""Undo / redo of the Review view's edits across images: a snapshot of an image's edit map
before each stroke or region action, with the image it belongs to (pure NumPy, no Qt).

The history is the review session's, not one image's: after a region action the queue moves on
to the next region, often on another image, and Ctrl+Z must still undo that action. A step of
another image than the one shown is applied by showing that image first (ReviewView).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_STEPS = 50


@dataclass
class Step:
    stem: str | None  # the image whose edit map `edit` is
    edit: np.ndarray
    tag: Any = None  # what made the step, for whoever shows it (a region action: its queue row)


class EditHistory:
    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        self.max_steps = max_steps
        self._undo: list[Step] = []
        self._redo: list[Step] = []

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    def push(self, before: np.ndarray, stem: str | None = None, tag: Any = None) -> None:
        """Record `stem`'s map before a stroke; a new stroke forgets what could be redone."""
        self._undo.append(Step(stem, before.copy(), tag))
        if len(self._undo) > self.max_steps:
            del self._undo[0]
        self._redo.clear()

    def undo(self, current: np.ndarray, stem: str | None = None) -> Step | None:
        """The step to restore, when it is `stem`'s (None: nothing, or another image's step)."""
        if not self._undo or self._undo[-1].stem != stem:
            return None
        step = self._undo.pop()
        self._redo.append(Step(stem, current.copy(), step.tag))
        return step

    def redo(self, current: np.ndarray, stem: str | None = None) -> Step | None:
        if not self._redo or self._redo[-1].stem != stem:
            return None
        step = self._redo.pop()
        self._undo.append(Step(stem, current.copy(), step.tag))
        return step

    @property
    def undo_stem(self) -> str | None:
        """The image the next undo belongs to (None when there is nothing to undo)."""
        return self._undo[-1].stem if self._undo else None

    @property
    def redo_stem(self) -> str | None:
        return self._redo[-1].stem if self._redo else None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)
