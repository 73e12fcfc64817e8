"""A project: the folder that holds everything a run needs and produces (DESIGN.md §4).

    project.json              format marker + the RunConfig (dataset references included)
    checkpoints/latest.pt     the resume point; stage-final files beside it (teacher.pt, student.pt)
    checkpoints/latest.prev.pt  the resume point before the last save: --resume falls back to it
    .murid.lock               the writer's lock (murid_engine.project_lock): one writer at a time
    metrics.jsonl             one JSON object per line, appended and fsynced
    rounds/round_NN/          pseudo-label round NN (from 1); round.json, written last, marks it done
    edits/<stem>.png          the user's painted labels: 255 = not edited, 254 = painted ignore
    edits/overrides.json      per-class threshold overrides and an optional portion
    exports/, reports/        exported models, evaluation reports
    errors/                   per-image results on target-val (murid_engine.error_analysis)

Every file is written whole, then renamed into place; metrics.jsonl is only ever appended to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.config import from_dict, read_json, to_dict
from murid_engine.curriculum.round_summary import ROUND_FILE, RoundSummary, read_round_summary
from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE  # the edit-map values
from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes, read_index_png, write_grey_png
from murid_engine.labels import CLASS_NAMES
from murid_engine.project_lock import LOCK_FILE, check_writable
from murid_engine.run_config import RunConfig

FORMAT = "murid-project"
VERSION = 1

PROJECT_FILE = "project.json"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"  # checkpoints/latest.pt: what --resume continues from
METRICS_FILE = "metrics.jsonl"
METRICS_CHUNK = 1000  # lines between read_metrics's between_chunks calls
ROUNDS_DIR = "rounds"
EDITS_DIR = "edits"
OVERRIDES_FILE = "overrides.json"
EXPORTS_DIR = "exports"
REPORTS_DIR = "reports"


_OS_JUNK = {".DS_Store", "Thumbs.db", "desktop.ini", LOCK_FILE}  # put in any folder shown: not a sign of use
_NAME = re.compile(r"[^./\\][^/\\]*")  # a file name: no separator, not hidden, not '..'
_ROUND = re.compile(r"round_(\d+)")


def _plain(obj: Any) -> Any:  # json.dumps default: NumPy and 0-d torch scalars become numbers
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"a metrics record cannot hold a {type(obj).__name__}")


_UNIQUE_KINDS = ("eval", "round")  # one record per (stage, model, iteration, round)


def _record_key(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in ("kind", "stage", "model", "iteration", "round"))


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def _safe_name(name: str, what: str) -> str:
    # Names become file names inside the project: a name must not reach outside its folder.
    if not _NAME.fullmatch(name):
        raise UserError(f"'{name}' is not a valid {what} name (no '/', '\\' or leading '.')")
    return name


@dataclass
class ResumePoint:
    """The checkpoint a --resume continues from; `note` says why it is not latest.pt, if it is not."""

    path: Path
    checkpoint: Any  # murid_engine.checkpoint.Checkpoint (torch loads only when resuming)
    note: str | None = None


_READABLE: dict[tuple, bool] = {}  # (path, inode, size, mtime) -> the file is a whole zip


def _whole_zip(path: Path) -> bool:
    """A cheap test that a checkpoint file is whole: a zip whose CRCs all match (memoised)."""
    import zipfile

    try:
        st = path.stat()
    except OSError:
        return False
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _READABLE:
        try:
            with zipfile.ZipFile(path) as archive:
                _READABLE[key] = archive.testzip() is None
        except (OSError, zipfile.BadZipFile, ValueError, EOFError):
            _READABLE[key] = False
    return _READABLE[key]


@dataclass
class Overrides:
    """The user's per-class thresholds {class name: confidence} and portion, from the Review view."""

    thresholds: dict[str, float] = field(default_factory=dict)
    portion: float | None = None

    def validate(self, where: str) -> Overrides:
        def number(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        for name, value in self.thresholds.items():
            if name not in CLASS_NAMES:
                raise UserError(f"{where}: unknown class '{name}' (classes: {', '.join(CLASS_NAMES)})")
            if not (number(value) and 0 <= value <= 1):
                raise UserError(f"{where}: the threshold of '{name}' must be a number in [0, 1], not {value!r}")
        if self.portion is not None and not (number(self.portion) and 0 < self.portion <= 1):
            raise UserError(f"{where}: portion must be a number in (0, 1] or null, not {self.portion!r}")
        return self


class Project:
    """A project folder; create it with `Project.create`, reopen it with `Project.open`."""

    def __init__(self, root: Path, config: RunConfig):
        self.root = Path(root)
        self.config = config
        self.project_file = self.root / PROJECT_FILE
        self.checkpoints_dir = self.root / CHECKPOINTS_DIR
        self.metrics_file = self.root / METRICS_FILE
        self.rounds_dir = self.root / ROUNDS_DIR
        self.edits_dir = self.root / EDITS_DIR
        self.exports_dir = self.root / EXPORTS_DIR  # exported models (TorchScript, ONNX)
        self.reports_dir = self.root / REPORTS_DIR  # evaluation reports

    @staticmethod
    def is_project(path: Path) -> bool:
        return (Path(path) / PROJECT_FILE).is_file()

    @classmethod
    def create(cls, path: Path, cfg: RunConfig) -> Project:
        """A new project in a new or empty folder; refuses any folder already in use."""
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise UserError(f"cannot create a project at {root}: it is a file")
        if cls.is_project(root):
            raise UserError(f"{root} is already a MURID project; open it (or --resume) instead of creating it")
        if root.is_dir() and any(p.name not in _OS_JUNK for p in root.iterdir()):
            raise UserError(f"{root} is not empty and is not a MURID project; choose a new or empty folder")
        project = cls(root, cfg)
        # One atomic write makes the folder a project; the sub-folders are also made on demand.
        project.save_config(cfg)
        for name in (CHECKPOINTS_DIR, ROUNDS_DIR, EDITS_DIR, EXPORTS_DIR, REPORTS_DIR):
            (root / name).mkdir(exist_ok=True)
        return project

    @classmethod
    def open(cls, path: Path) -> Project:
        """An existing project, its configuration read and validated."""
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"project folder {root} {'is a file' if root.exists() else 'does not exist'}")
        if not cls.is_project(root):
            raise UserError(f"{root} is not a MURID project (it has no {PROJECT_FILE})")
        project = cls(root, RunConfig())
        project.config = project.load_config()
        return project

    def save_config(self, cfg: RunConfig) -> None:
        """Validate and store the configuration (atomically); it becomes `self.config`."""
        cfg.validate()
        _write_json(self.project_file, {"format": FORMAT, "version": VERSION, "config": to_dict(cfg)})
        self.config = cfg

    def load_config(self) -> RunConfig:
        """The stored configuration, with one-sentence errors naming project.json."""
        path = self.project_file
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not a MURID project file (no \"format\": \"{FORMAT}\")")
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise UserError(f"{path} has format version {version!r}; this MURID Studio reads up to {VERSION}")
        cfg = from_dict(RunConfig, data.get("config"), str(path))
        try:
            return cfg.validate()
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None

    def checkpoint_path(self, name: str = LATEST) -> Path:
        """checkpoints/<name>.pt: 'latest' (the resume point), 'teacher', 'student', ..."""
        return self.checkpoints_dir / f"{_safe_name(name, 'checkpoint')}.pt"

    def checkpoints(self) -> list[str]:
        """Names of the stored checkpoints (the kept predecessors, `*.prev`, are not listed)."""
        return sorted(p.stem for p in self.checkpoints_dir.glob("*.pt")
                      if p.is_file() and not p.stem.endswith(".prev"))

    def latest_checkpoint(self, name: str = LATEST) -> Path | None:
        """The file a --resume continues from: checkpoints/<name>.pt, or its kept predecessor
        <name>.prev.pt when <name>.pt is missing or not a whole file (damaged on disk)."""
        path = self.checkpoint_path(name)
        prev = self.checkpoint_path(f"{name}.prev")
        if path.is_file() and (_whole_zip(path) or not prev.is_file() or not _whole_zip(prev)):
            return path
        return prev if prev.is_file() else None

    def resume_checkpoint(self, name: str = LATEST) -> ResumePoint | None:
        """The checkpoint to resume from, loaded: <name>.pt, else (with a one-sentence note saying
        so) <name>.prev.pt; None when there is neither. When neither loads, <name>.pt's error is
        raised. The caller rewinds metrics.jsonl to the returned checkpoint's stage and iteration."""
        from murid_engine.checkpoint import readable_checkpoint

        path, prev = self.checkpoint_path(name), self.checkpoint_path(f"{name}.prev")
        if not path.is_file() and not prev.is_file():
            return None
        error = None
        if path.is_file():
            ckpt, error = readable_checkpoint(path)
            if ckpt is not None:
                return ResumePoint(path, ckpt)
        if prev.is_file():
            ckpt, _ = readable_checkpoint(prev)
            if ckpt is not None:
                why = f"is unreadable ({error})" if error is not None else "is missing"
                return ResumePoint(prev, ckpt, f"{path} {why}; continuing from the previous checkpoint "
                                               f"{prev.name} ({ckpt.stage} iteration {ckpt.iteration})")
        if error is not None:
            raise error
        from murid_engine.checkpoint import load_checkpoint
        return ResumePoint(prev, load_checkpoint(prev))  # raises prev's own error

    def resume_note(self, name: str = LATEST) -> str | None:
        """One sentence when a resume of <name> will use the predecessor file, else None."""
        path, chosen = self.checkpoint_path(name), self.latest_checkpoint(name)
        if chosen is None or chosen == path:
            return None
        why = "is missing" if not path.is_file() else "is damaged (not a whole checkpoint file)"
        return f"{path} {why}; continuing from the previous checkpoint {chosen.name}"

    def forget_unsaved_progress(self, stages: tuple[str, ...] | list[str]) -> int:
        """With no resume point left, the records of `stages` belong to a lost attempt: remove
        them, so that starting those stages again does not log their iterations twice."""
        if not self.metrics_file.is_file():
            return 0
        wanted = set(stages)
        return self.rewind_metrics(lambda r: r.get("stage") not in wanted)

    def remove_if_skeleton(self, keep_folder: bool = False) -> bool:
        """Remove what `create` made when that is all the folder holds (a failed first `train`):
        project.json, the empty sub-folders, the lock file, an empty metrics.jsonl, the cache;
        the folder itself too unless `keep_folder` (it existed, empty, before)."""
        root = self.root
        if not root.is_dir():
            return False
        made = {PROJECT_FILE, CHECKPOINTS_DIR, ROUNDS_DIR, EDITS_DIR, EXPORTS_DIR, REPORTS_DIR, LOCK_FILE,
                METRICS_FILE, "cache"} | _OS_JUNK
        for entry in root.iterdir():
            if entry.name not in made:
                return False
            if entry.is_dir() and entry.name != "cache" and any(entry.iterdir()):
                return False
            if entry.name == METRICS_FILE and entry.stat().st_size:
                return False
        import shutil

        if not keep_folder:
            shutil.rmtree(root, ignore_errors=True)
            return not root.exists()
        for entry in root.iterdir():
            if entry.name not in _OS_JUNK or entry.name == LOCK_FILE:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return True

    def clean_temp_files(self) -> int:
        """Remove temporary files left by a killed writer; call only while no one else writes."""
        stale = list(self.root.rglob(".*.tmp"))  # atomic_write_bytes's names: .<name>.<random>.tmp
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record and fsync it, so that a kill -9 loses at most the line being written.

        An evaluation or round record replaces an earlier one of the same stage, model, iteration
        and round: a run resumed from a stage's final checkpoint evaluates that stage again, and
        one result per point is what the metrics mean."""
        if record.get("kind") in _UNIQUE_KINDS and self.metrics_file.is_file():
            key = _record_key(record)
            if any(_record_key(r) == key for r in self.read_metrics()):
                self.rewind_metrics(lambda r: _record_key(r) != key)
        line = (json.dumps(record, default=_plain) + "\n").encode("utf-8")  # one write: whole or absent
        with open(self.metrics_file, "ab+") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(end - 1, 0))
            if end and f.read(1) != b"\n":
                # A line torn by a kill -9 (rare): cut it, or the new record would be glued onto it.
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
            end = f.seek(0, os.SEEK_END)
            try:
                f.write(line)  # append mode: always at the end
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:  # a full disk: no torn line is left behind
                f.truncate(end)
                exc.filename = exc.filename or str(self.metrics_file)
                raise

    def read_metrics(self, between_chunks: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        """Every record, in order; a torn last line (a kill -9 mid-append) is ignored.

        `between_chunks` is called every METRICS_CHUNK lines (a reader beside a GUI pauses there,
        letting the GIL go)."""
        path = self.metrics_file
        if not path.is_file():
            return []
        lines = path.read_bytes().split(b"\n")
        records = []
        for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: empty, or torn
            if between_chunks is not None and number % METRICS_CHUNK == 0:
                between_chunks()
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict):
                raise UserError(f"{path} line {number} is not a JSON object; fix or delete that line")
            records.append(record)
        return records

    def rewind_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Keep the records `keep` accepts (e.g. up to a resumed checkpoint's iteration, so replayed
        iterations are not logged twice); returns the number removed."""
        records = self.read_metrics()
        kept = [r for r in records if keep(r)]
        atomic_write_bytes(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))
        return len(records) - len(kept)

    def round_dir(self, r: int, create: bool = False) -> Path:
        """rounds/round_NN for round r (numbered from 1)."""
        if r < 1:
            raise ValueError(f"rounds are numbered from 1, not {r}")
        path = self.rounds_dir / f"round_{r:02d}"
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def rounds(self, complete_only: bool = True) -> list[int]:
        """Round numbers on disk, ascending; complete = its round.json was written."""
        return sorted(int(m.group(1)) for p in self.rounds_dir.glob("round_*")
                      if (m := _ROUND.fullmatch(p.name)) and int(m.group(1)) >= 1 and p.is_dir()
                      and (not complete_only or (p / ROUND_FILE).is_file()))

    def latest_round(self, complete_only: bool = True) -> int | None:
        found = self.rounds(complete_only)
        return found[-1] if found else None

    def read_round_info(self, r: int) -> RoundSummary:
        """Round r's summary (curriculum.round_summary, which alone writes and reads round.json)."""
        path = self.round_dir(r) / ROUND_FILE
        if not path.is_file():
            raise UserError(f"pseudo-label round {r} of {self.root} is not complete (no {path.name})")
        return read_round_summary(path.parent)

    def edit_path(self, stem: str) -> Path:
        return self.edits_dir / f"{_safe_name(stem, 'image')}.png"

    def save_edit(self, stem: str, edit: np.ndarray) -> None:
        """Store an edit map (train ids, EDIT_IGNORE, EDIT_NONE); an edit of all EDIT_NONE is removed."""
        allowed = (edit < self.config.model.num_classes) | (edit == EDIT_IGNORE) | (edit == EDIT_NONE)
        if edit.ndim != 2 or edit.min(initial=0) < 0 or not allowed.all():
            raise ValueError(f"the edit of '{stem}' must be (H, W) train ids, EDIT_IGNORE or EDIT_NONE")
        path = self.edit_path(stem)
        check_writable(self.root)  # not while a `murid train` (or another app) writes the project
        if (edit == EDIT_NONE).all():
            path.unlink(missing_ok=True)
        else:
            write_grey_png(path, edit.astype(np.uint8))

    def load_edit(self, stem: str) -> np.ndarray | None:
        """The edit map of an image, or None when the user has not edited it."""
        path = self.edit_path(stem)
        return read_index_png(path) if path.is_file() else None

    def edited_stems(self) -> list[str]:
        return sorted(p.stem for p in self.edits_dir.glob("*.png") if not p.name.startswith("."))

    def save_overrides(self, overrides: Overrides) -> None:
        path = self.edits_dir / OVERRIDES_FILE
        overrides.validate(str(path))
        check_writable(self.root)
        _write_json(path, {"thresholds": overrides.thresholds, "portion": overrides.portion})

    def load_overrides(self) -> Overrides:
        """The stored overrides; none stored = no overrides."""
        path = self.edits_dir / OVERRIDES_FILE
        if not path.is_file():
            return Overrides()
        data = read_json(path)
        if not isinstance(data, dict) or set(data) - {"thresholds", "portion"}:
            raise UserError(f"{path} must hold an object with 'thresholds' and 'portion' only")
        thresholds = data.get("thresholds", {})
        if not isinstance(thresholds, dict):
            raise UserError(f"{path}: thresholds must be an object {{class name: threshold}}")
        return Overrides(dict(thresholds), data.get("portion")).validate(str(path))
