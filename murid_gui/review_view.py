"""Review view: a curriculum round's pseudo-labels, their thresholds, and the user's corrections.

Edits (edits/<stem>.png) and overrides (edits/overrides.json) are saved into the project, where
the next round's labels and training read them (murid_engine.training.round_labels). While
another process holds the project (murid_engine.project_lock) nothing is saved, and the view says
who holds it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from murid_engine.curriculum.thresholds import rethreshold
from murid_engine.jobs import Progress, StageStarted
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import EDIT_IGNORE, EDIT_NONE, Project
from murid_engine.project_lock import LockHolder, ProjectLocked, held_by_other

from . import tasks
from .class_legend import ClassLegend, swatch
from .image_list import ImageList
from .label_canvas import MODES, LabelCanvas
from .reader import Reader
from .region_queue import RegionQueue
from .round_data import ImageView, RoundView, TargetImages, read_image_view, read_round_view
from .threshold_panel import ThresholdPanel

SHORTCUTS = {"pan": "P", "brush": "B", "eraser": "E", "fill": "F"}


class ReviewView(QWidget):
    image_shown = Signal(str, object)  # stem, its region map (or None): the canvas shows it now

    def __init__(self, runner, parent: QWidget | None = None, reader: Reader | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.reader = reader or Reader(self)
        self.project: Project | None = None
        self.round: int | None = None
        self.info: RoundSummary | None = None
        self.stem: str | None = None
        self.pred: np.ndarray | None = None
        self.level: np.ndarray | None = None
        self.overrides_dirty = False
        self._images: TargetImages | None = None
        self._holder: LockHolder | None = None  # another process writing into the project
        self._loading_stem: str | None = None  # the image asked of the reader, not shown yet
        self._pending_step: tuple[str, str] | None = None  # (undo or redo, stem) awaiting that image

        self.round_box = QComboBox()
        self.round_box.currentIndexChanged.connect(self._on_round)
        self.new_round_button = QPushButton("New round (pseudo-label)")
        self.new_round_button.setToolTip("Label the target images with the current teacher, using "
                                         "your thresholds and edits")
        self.new_round_button.clicked.connect(self.new_round)
        self.apply_button = QPushButton("Apply thresholds to this round")
        self.apply_button.setToolTip("Rewrite this round's labels with your thresholds (fast: the "
                                     "teacher is not run again); training resumed on this round uses them")
        self.apply_button.clicked.connect(lambda _=False: self.apply_to_round())
        self.save_button = QPushButton("Save edits && thresholds")
        self.save_button.clicked.connect(lambda _=False: self.save_current())
        self.status = QLabel("open a project with a curriculum round")
        self.status.setMinimumWidth(50)

        self.images = ImageList()
        self.images.image_selected.connect(self.show_image)
        self.canvas = LabelCanvas()
        self.canvas.edited.connect(self._on_edited)
        self.legend = ClassLegend()
        self.legend.visibility_changed.connect(self.canvas.set_visible_classes)
        self.thresholds = ThresholdPanel()
        self.thresholds.thresholds_changed.connect(self._on_thresholds)

        # --- tool bar
        self.tool_buttons: dict[str, QToolButton] = {}
        group = QButtonGroup(self)
        tools = QHBoxLayout()
        for tool in ("pan", "brush", "eraser", "fill"):
            b = QToolButton()
            b.setText(tool.capitalize())
            b.setToolTip(f"{tool} tool (shortcut {SHORTCUTS[tool]}); undo Ctrl+Z, redo Ctrl+Y, "
                         "brush size [ and ], save Ctrl+S")
            b.setCheckable(True)
            b.clicked.connect(lambda _=False, t=tool: self.set_tool(t))
            group.addButton(b)
            tools.addWidget(b)
            self.tool_buttons[tool] = b
        self.tool_buttons["pan"].setChecked(True)
        self.paint_class = QComboBox()
        # It shares its row with the radius and the view mode: let it shrink (the list stays wide)
        self.paint_class.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.paint_class.setMinimumContentsLength(8)
        for c, name in enumerate(CLASS_NAMES):
            self.paint_class.addItem(swatch(c), name, c)
        self.paint_class.addItem(swatch(255), "ignore (no loss)", EDIT_IGNORE)
        self.paint_class.currentIndexChanged.connect(
            lambda i: setattr(self.canvas, "paint_value", int(self.paint_class.itemData(i))))
        self.brush_size = QSpinBox()
        self.brush_size.setRange(0, 64)
        self.brush_size.setValue(self.canvas.brush_radius)
        self.brush_size.setPrefix("radius ")
        self.brush_size.valueChanged.connect(lambda v: setattr(self.canvas, "brush_radius", v))
        self.undo_button, self.redo_button = QPushButton("Undo"), QPushButton("Redo")
        self.undo_button.clicked.connect(lambda _=False: self.undo())
        self.redo_button.clicked.connect(lambda _=False: self.redo())
        self.canvas.history_changed.connect(self._on_history)
        self._on_history(False, False)
        for w in (self.undo_button, self.redo_button):
            tools.addWidget(w)

        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.currentTextChanged.connect(self.canvas.set_mode)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.canvas.opacity * 100))
        self.opacity.setMinimumWidth(60)  # on the tools row, which has room at 1280×800
        self.opacity.setToolTip("opacity of the labels over the image")
        self.opacity.valueChanged.connect(lambda v: self.canvas.set_opacity(v / 100))
        tools.addSpacing(8)
        tools.addWidget(QLabel("Opacity"))
        tools.addWidget(self.opacity, 1)
        looks = QHBoxLayout()
        looks.addWidget(self.paint_class, 1)
        looks.addWidget(self.brush_size)
        looks.addWidget(QLabel("Show"))
        looks.addWidget(self.mode)
        self.image_caption = QLabel("")
        self.image_caption.setMinimumWidth(50)
        self.image_problem: str | None = None

        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addLayout(tools)
        cl.addLayout(looks)
        cl.addWidget(self.image_caption)
        cl.addWidget(self.canvas, 1)
        side = QTabWidget()
        side.addTab(self.thresholds, "Thresholds")
        side.addTab(self.legend, "Classes")
        split = QSplitter(Qt.Horizontal)
        self.regions = RegionQueue(self)  # "Regions to check": the round's RIPU queue, worst first
        lists = QTabWidget()
        lists.addTab(self.images, "Images")
        lists.addTab(self.regions, "Regions to check")
        split.addWidget(lists)
        split.addWidget(center)
        split.addWidget(side)
        split.setSizes([430, 510, 340])  # the left lists show a whole stem and four numbers
        top = QHBoxLayout()
        top.addWidget(QLabel("Round"))
        top.addWidget(self.round_box)
        top.addWidget(self.new_round_button)
        top.addWidget(self.apply_button)
        top.addWidget(self.save_button)
        top.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self._shortcuts()

    def _shortcuts(self) -> None:
        def keys(*seqs) -> list[QKeySequence]:
            out: list[QKeySequence] = []
            for seq in seqs:
                found = QKeySequence.keyBindings(seq) if isinstance(seq, QKeySequence.StandardKey) \
                    else [QKeySequence(seq)]
                out += [k for k in found if k not in out]
            return out

        bindings = [(keys(SHORTCUTS[t]), lambda _=False, t=t: self.set_tool(t)) for t in SHORTCUTS]
        bindings += [(keys(QKeySequence.Undo), lambda _=False: self.undo()),
                     (keys(QKeySequence.Redo, "Ctrl+Y", "Ctrl+Shift+Z"), lambda _=False: self.redo()),
                     (keys(QKeySequence.Save), lambda _=False: self.save_current()),
                     (keys("]"), lambda _=False: self.brush_size.setValue(self.brush_size.value() + 1)),
                     (keys("["), lambda _=False: self.brush_size.setValue(self.brush_size.value() - 1))]
        self.actions_by_key = {}
        for sequences, slot in bindings:
            action = QAction(self)
            action.setShortcuts(sequences)
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            self.addAction(action)
            for seq in sequences:
                self.actions_by_key[seq.toString()] = action

    # ------------------------------------------------------------------ project and rounds
    # Every read (the round list, round.json, the edits, the target file list, an image) runs on
    # the reader thread; the view shows what it had, or a placeholder, until the result arrives.
    def set_project(self, project: Project, select_round: int | None = None) -> None:
        """Show `project`'s rounds (the latest, or `select_round`) once they are listed."""
        self.save_current()
        self.project = project
        self._images = TargetImages(project)
        self._clear_round()
        self.round_box.blockSignals(True)
        self.round_box.clear()
        self.round_box.blockSignals(False)
        self.status.setText("reading the project's rounds …")
        self._holder = None  # who else writes into the project (a lock file read with the rounds)
        self.reader.read("review-rounds", lambda: (project.rounds(), held_by_other(project.root)),
                         lambda listing: self._show_rounds(*listing, select_round),
                         lambda message: self.status.setText(f"could not list the rounds: {message}"))

    def _show_rounds(self, rounds: list[int], holder: LockHolder | None, select_round: int | None) -> None:
        self._holder = holder
        self.round_box.blockSignals(True)
        self.round_box.clear()
        for r in rounds:
            self.round_box.addItem(f"round {r}", r)
        chosen = select_round if select_round in rounds else (rounds[-1] if rounds else None)
        self.round_box.setCurrentIndex(self.round_box.findData(chosen) if chosen is not None else -1)
        self.round_box.blockSignals(False)
        if chosen is not None:
            self.load_round(chosen)
        else:
            self.status.setText("no pseudo-label round yet: train through the curriculum stage, "
                                "or make one with 'New round'")
        self._say_read_only()

    @property
    def read_only(self) -> bool:
        """Another process writes into the project: nothing edited now could be saved."""
        return self._holder is not None

    def _say_read_only(self) -> None:
        # The editing tools follow the lock, so no work is done that could not be kept.
        for tool, button in self.tool_buttons.items():
            button.setEnabled(tool == "pan" or not self.read_only)
        self.paint_class.setEnabled(not self.read_only)
        if self.read_only:
            self.set_tool("pan")
        if self._holder is not None:
            self.status.setText(f"read-only: {self._holder.describe()} is writing into this project; "
                                "edits made while it runs cannot be saved and are not kept")

    def _clear_round(self) -> None:
        self.save_edit()
        self.canvas.clear_history()  # its steps are this round's images'
        self._pending_step = None
        self.stem = self.pred = self.level = None
        self._loading_stem = None
        self.reader.cancel("review-image")
        self.round = self.info = None
        self.images.load({})

    def _on_round(self, index: int) -> None:
        if index >= 0:
            self.save_current()
            self.load_round(int(self.round_box.itemData(index)))

    def load_round(self, r: int) -> None:
        """Show round r: its list and first image follow from the reader thread."""
        self._clear_round()
        self.round = r
        self.status.setText(f"loading round {r} …")
        self.image_caption.setText("")
        project, images = self.project, self._images
        self.reader.read("review-round", lambda: read_round_view(project, r, images), self._show_round,
                         lambda message: self.status.setText(f"cannot show round {r}: {message}"))
        self.regions.load(project, r)

    def _show_round(self, view: RoundView) -> None:
        if view.round != self.round:
            return
        self.info = view.info
        self.thresholds.load(self.info, view.overrides)
        self.overrides_dirty = False
        images = self.info.images
        self.images.load(images, view.paths, view.columns)
        self.status.setText(f"round {view.round}: portion {self.info.portion:g}, {len(images)} images, "
                            f"kept {self.info.kept_fraction:.0%}")
        self._say_read_only()
        stems = self.images.stems()
        if stems:
            self.images.select(stems[0])

    # ------------------------------------------------------------------ one image
    def show_image(self, stem: str) -> None:
        """Ask for `stem`'s pixels; the canvas keeps the image shown until they arrive."""
        if self.info is None or stem == self._loading_stem or (stem == self.stem and self.pred is not None):
            return
        self._loading_stem = stem
        self.image_caption.setText(f"{stem} · loading …")
        project, r, images = self.project, self.round, self._images
        regions = self.regions.regions if self.regions.round == r else None
        self.reader.read("review-image", lambda: read_image_view(project, r, stem, images, regions),
                         self._show_image_view, lambda message: self._image_failed(stem, message))

    def _image_failed(self, stem: str, message: str) -> None:
        self._loading_stem = None
        self.status.setText(f"cannot show {stem}: {message}")

    def _show_image_view(self, view: ImageView) -> None:
        self._loading_stem = None
        if view.round != self.round or self.info is None:
            return
        self.save_edit()  # strokes on the image shown until now belong to it
        self.stem, self.pred, self.level = view.stem, view.pred, view.level
        self.image_problem = view.problem
        labels = rethreshold(self.pred, self.level, self.thresholds.thresholds())
        self.canvas.set_content(view.image, labels, self.level, view.gt, view.edit, view.stem)
        stats = self.info.images.get(view.stem)
        self.image_caption.setText(f"{view.stem} · mean conf. {stats.mean_confidence if stats else 0:.2f}"
                                   + ("" if view.gt is not None else " · no ground truth")
                                   + (f" · {view.problem}" if view.problem else ""))
        self.image_shown.emit(view.stem, view.region_map)
        pending, self._pending_step = self._pending_step, None
        if pending is not None and pending[1] == view.stem:
            self._step(pending[0])

    # ------------------------------------------------------------------ undo / redo
    def undo(self) -> None:
        self._step("undo")

    def redo(self) -> None:
        self._step("redo")

    def _step(self, which: str) -> None:
        """Undo or redo the session's last step; one made on another image shows that image
        first (a region action moves the queue on, often to another image)."""
        history = self.canvas.history
        stem = history.undo_stem if which == "undo" else history.redo_stem
        if stem is None or self.read_only:
            return
        if stem == self.stem and self.pred is not None:
            getattr(self.canvas, which)()
            return
        self._pending_step = (which, stem)  # done when the image arrives from the reader
        self.images.select(stem)
        self.show_image(stem)

    def _on_thresholds(self, thresholds: np.ndarray) -> None:
        """Live preview: the current image re-thresholded (two table look-ups, milliseconds)."""
        self.overrides_dirty = True
        if self.pred is not None:
            self.canvas.set_labels(rethreshold(self.pred, self.level, thresholds))

    def _on_edited(self) -> None:
        if self.stem is not None and self.canvas.edit is not None:
            self.images.set_edited(self.stem, int(np.count_nonzero(self.canvas.edit != EDIT_NONE)))

    def _on_history(self, can_undo: bool, can_redo: bool) -> None:
        self.undo_button.setEnabled(can_undo)
        self.redo_button.setEnabled(can_redo)

    def set_tool(self, tool: str) -> None:
        if self.read_only:
            tool = "pan"
        self.canvas.set_tool(tool)
        self.tool_buttons[tool].setChecked(True)

    # ------------------------------------------------------------------ saving
    def save_edit(self) -> None:
        self._say_unsaved(self._save_edit())

    def _save_edit(self) -> list[tuple[str, ProjectLocked]]:
        """Write the current image's edit; what was refused (another process holds the project)."""
        if self.project is not None and self.stem is not None and self.canvas.dirty:
            try:
                self.project.save_edit(self.stem, self.canvas.edit)
            except ProjectLocked as exc:
                return [(f"the edit of {self.stem}", exc)]
            self.canvas.dirty = False
        return []

    def save_current(self) -> None:
        """Write the current image's edit and the thresholds into the project."""
        if self.project is None:
            return
        refused = self._save_edit()
        if self.overrides_dirty and self.info is not None:
            try:
                self.project.save_overrides(self.thresholds.to_overrides())
                self.overrides_dirty = False
            except ProjectLocked as exc:
                refused.append(("the thresholds", exc))
        self._say_unsaved(refused)

    def _say_unsaved(self, refused: list[tuple[str, ProjectLocked]]) -> None:
        if refused:  # said in the view, never raised out of a Qt slot
            what = " and ".join(name for name, _ in refused)
            self.status.setText(f"read-only: {what} not saved; {refused[0][1]}")
            self.status.setToolTip(self.status.text())

    # ------------------------------------------------------------------ jobs
    def new_round(self) -> None:
        if self.project is None:
            return
        self.save_current()
        self.runner.start("pseudo", tasks.pseudo_job(self.project.root))

    def apply_to_round(self) -> None:
        if self.project is None or self.round is None:
            return
        self.save_current()
        self.runner.start("relabel", tasks.relabel_job(self.project.root, self.round))

    def on_event(self, event) -> None:
        if isinstance(event, StageStarted):
            self.status.setText(f"{event.stage} …")
        elif isinstance(event, Progress):  # the pseudo-label pass, image by image
            eta = "" if event.eta_s is None else f", about {event.eta_s:.0f} s left"
            self.status.setText(f"{event.stage}: {event.iteration}/{event.total} images{eta}")

    def round_ready(self, r: int) -> None:
        """A round was written (by training): list it without leaving the image being reviewed."""
        if self.project is None:
            return
        if self.round_box.findData(r) < 0:
            self.round_box.blockSignals(True)
            self.round_box.addItem(f"round {r}", r)
            self.round_box.blockSignals(False)
        if self.round is None:
            self.round_box.setCurrentIndex(self.round_box.findData(r))
        else:
            self.status.setText(f"round {r} is ready: choose it above to review it")

    def job_finished(self, name: str, result) -> None:
        if name == "pseudo" and result is None:
            self.status.setText("pseudo-labelling stopped: no new round was written; the earlier rounds "
                                "are as they were")
        if name in ("pseudo", "relabel") and isinstance(result, int) and self.project is not None:
            self.set_project(self.project, select_round=result)
            self.round = result  # the round shown once it is read

    def set_busy(self, busy: bool) -> None:
        self.new_round_button.setEnabled(not busy)
        self.apply_button.setEnabled(not busy)
