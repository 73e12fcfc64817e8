"""Start view: new project (source, target, preset), open a project folder, recent projects, demo."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from murid_engine.config import list_presets

RECENT_KEY = "recent_projects"
MAX_RECENT = 10


class RecentProjects:
    """The most recently opened project folders, newest first, kept in QSettings."""

    def __init__(self, settings: QSettings) -> None:
        self.settings = settings

    def list(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings gives a lone string for a one-item list
            value = [value]
        return [str(v) for v in (value or [])]

    def add(self, folder: str | Path) -> None:
        folder = str(Path(folder).resolve())
        items = [folder] + [f for f in self.list() if f != folder]
        self.settings.setValue(RECENT_KEY, items[:MAX_RECENT])  # seen at once by every QSettings here
        # Written to disk on the next event-loop turn: the write took 15-30 ms of the open's slice.
        QTimer.singleShot(0, self.settings.sync)


class StartView(QWidget):
    """Asks the main window to create, open or generate a project (it does the work)."""

    create_requested = Signal(str, str, str, str)  # folder, source spec, target spec, preset
    open_requested = Signal(str)
    demo_requested = Signal(str)  # the folder to generate the demo in

    def __init__(self, recent: RecentProjects, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.recent = recent
        title = QLabel("<h2>MURID Studio</h2>Adapt a segmentation model to a new domain without "
                       "labelling it: train, watch, review the pseudo-labels, distil and evaluate.")
        title.setWordWrap(True)

        # --- try the demo
        self.demo_folder = QLineEdit(str(Path.home() / "murid-demo"))
        self.demo_button = QPushButton("Try the demo")
        self.demo_button.setToolTip("Generate the SynthCity benchmark and open a ready project on it")
        self.demo_button.clicked.connect(lambda: self.demo_requested.emit(self.demo_folder.text().strip()))
        demo_box = QGroupBox("Try the demo (SynthCity, trains in minutes on a CPU)")
        demo_row = QHBoxLayout(demo_box)
        demo_row.addWidget(QLabel("Folder"))
        demo_row.addWidget(self.demo_folder, 1)
        demo_row.addWidget(self.demo_button)

        # --- new project
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a new or empty folder")
        self.source = QLineEdit()
        self.source.setPlaceholderText("KIND:PATH, e.g. gta5:/data/gta5 or synthcity:demo")
        self.target = QLineEdit()
        self.target.setPlaceholderText("KIND:PATH, e.g. cityscapes:/data/cityscapes")
        self.preset = QComboBox()
        self.preset.addItems(list_presets())
        if (i := self.preset.findText("cpu-demo")) >= 0:
            self.preset.setCurrentIndex(i)
        self.create_button = QPushButton("Create project")
        self.create_button.clicked.connect(self._create)
        new_box = QGroupBox("New project")
        form = QFormLayout(new_box)
        form.addRow("Project folder", self._with_browse(self.folder, "Project folder"))
        form.addRow("Source (labelled)", self._with_browse(self.source, "Source dataset", spec=True))
        form.addRow("Target (unlabelled)", self._with_browse(self.target, "Target dataset", spec=True))
        form.addRow("Preset", self.preset)
        form.addRow("", self.create_button)
        kinds = QLabel("Dataset kinds: <b>gta5</b> (images/, labels/), <b>synthia</b> (RGB/, GT/LABELS/), "
                       "<b>cityscapes</b> (leftImg8bit/, gtFine/), <b>folder</b> (images/ and optional "
                       "labels/ of train ids), <b>synthcity</b> (<code>murid synth</code>). The target "
                       "needs no labels; a labelled validation split lets the app score the models. "
                       "Presets: <b>cpu-demo</b> (minutes on a CPU), <b>paper</b> (ResNet-101, GPU), "
                       "<b>smoke</b> (seconds, for checks).")
        kinds.setWordWrap(True)
        form.addRow("", kinds)

        # --- open + recent
        self.open_button = QPushButton("Open project folder…")
        self.open_button.clicked.connect(self._browse_open)
        self.recent_list = QListWidget()
        self.recent_list.itemActivated.connect(lambda item: self.open_requested.emit(item.data(Qt.UserRole)))
        self.open_recent_button = QPushButton("Open selected")
        self.open_recent_button.clicked.connect(self._open_selected)
        open_box = QGroupBox("Open a project")
        open_col = QVBoxLayout(open_box)
        open_col.addWidget(self.open_button)
        open_col.addWidget(QLabel("Recent projects"))
        open_col.addWidget(self.recent_list, 1)
        open_col.addWidget(self.open_recent_button)

        row = QHBoxLayout()
        row.addWidget(new_box, 3)
        row.addWidget(open_box, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(demo_box)
        layout.addLayout(row, 1)
        self.refresh_recent()

    def _with_browse(self, edit: QLineEdit, title: str, spec: bool = False) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("…")
        button.setFixedWidth(32)

        def browse() -> None:
            folder = QFileDialog.getExistingDirectory(self, title)
            if folder:
                kind = edit.text().split(":", 1)[0] if ":" in edit.text() else "synthcity"
                edit.setText(f"{kind}:{folder}" if spec else folder)
        button.clicked.connect(browse)
        row.addWidget(button)
        return box

    def refresh_recent(self) -> None:
        self.recent_list.clear()
        for folder in self.recent.list():
            item = QListWidgetItem(f"{Path(folder).name}   —   {folder}")
            item.setData(Qt.UserRole, folder)
            if not Path(folder).is_dir():
                item.setToolTip("this folder no longer exists")
                item.setForeground(Qt.gray)
            self.recent_list.addItem(item)

    def set_busy(self, busy: bool) -> None:
        for w in (self.demo_button, self.create_button):
            w.setEnabled(not busy)

    def _create(self) -> None:
        self.create_requested.emit(self.folder.text().strip(), self.source.text().strip(),
                                   self.target.text().strip(), self.preset.currentText())

    def _browse_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a MURID project folder")
        if folder:
            self.open_requested.emit(folder)

    def _open_selected(self) -> None:
        item = self.recent_list.currentItem()
        if item is not None:
            self.open_requested.emit(item.data(Qt.UserRole))
