"""One writer at a time per project folder: an OS lock on DIR/.murid.lock.

`train`, `pseudo`, `distill` and the app's jobs hold the lock while they write; a second writer
gets one sentence naming the holder (pid, command, since when) and exit code 2. The lock is a
POSIX record lock (`fcntl.lockf`), not `flock`: the kernel drops it the moment its process
dies (a kill -9 never leaves a stale lock), and the processes it forks (DataLoader workers)
do not inherit it, so a killed run's lingering workers cannot keep the project locked.

A POSIX lock is dropped when its process closes *any* descriptor of the file, so this process
never opens the lock file twice: locks it holds are kept in `_HELD`, and asking who holds a
project it has locked itself is answered from there.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from murid_engine.errors import UserError

LOCK_FILE = ".murid.lock"

_HELD: dict[Path, ProjectLock] = {}  # resolved project root -> this process's lock on it
_GUARD = threading.Lock()


class ProjectLocked(UserError):
    """Another process (or job of this one) is writing into the project."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str
    since: float  # time.time() when the lock was taken

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "unknown"
        return f"process {self.pid} ({self.command or 'unknown command'}, since {when})"


def current_command() -> str:
    """This process's command line, shortened: what a refused second writer is told."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("__main__.py", "murid"):
        argv[0] = "murid"
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


def _key(root: Path) -> Path:
    return Path(root).expanduser().resolve()


def _read_holder(fd: int) -> LockHolder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid, command, since = data.get("pid"), data.get("command"), data.get("since")
    return LockHolder(pid if isinstance(pid, int) else -1, command if isinstance(command, str) else "",
                      float(since) if isinstance(since, (int, float)) else 0.0)


def _refusal(root: Path, holder: LockHolder) -> ProjectLocked:
    return ProjectLocked(f"project {root} is in use by {holder.describe()}; wait for it to finish "
                         "or stop it, then try again")


class ProjectLock:
    """A held lock; release it with `release()` or use it as a context manager."""

    def __init__(self, root: Path, fd: int, holder: LockHolder):
        self.root = root
        self._fd: int | None = fd
        self.holder = holder

    @classmethod
    def acquire(cls, root: Path, command: str | None = None) -> ProjectLock:
        """Lock the project folder `root` (it must exist), or raise ProjectLocked."""
        key = _key(root)
        with _GUARD:
            if key in _HELD:
                raise _refusal(Path(root), _HELD[key].holder)
            path = key / LOCK_FILE
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise UserError(f"cannot lock project {root} ({path}: {exc.strerror or exc})") from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise _refusal(Path(root), holder) from None
            holder = LockHolder(os.getpid(), command or current_command(), time.time())
            try:  # who holds it, for the refusal another writer gets
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": holder.pid, "command": holder.command,
                                          "since": holder.since}).encode("utf-8"), 0)
            except OSError:
                pass  # a full disk: the lock still holds, only its description is missing
            lock = cls(key, fd, holder)
            _HELD[key] = lock
            return lock

    def release(self) -> None:
        with _GUARD:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            _HELD.pop(self.root, None)
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing drops the POSIX lock

    def __enter__(self) -> ProjectLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_project(root: Path, command: str | None = None) -> ProjectLock:
    """`ProjectLock.acquire`: hold it while writing into the project (`with lock_project(dir):`)."""
    return ProjectLock.acquire(root, command)


def hold_project_lock(root: Path, command: str | None = None) -> ProjectLock:
    """Lock for the rest of a command: `release_all` (called by the `murid` entry point when
    the command returns) or the process's exit frees it."""
    return ProjectLock.acquire(root, command)


def release_all() -> None:
    """Free every lock this process holds (the end of a `murid` command)."""
    for lock in list(_HELD.values()):
        lock.release()


def lock_holder(root: Path) -> LockHolder | None:
    """Who holds the project's lock (this process included), or None when it is free."""
    key = _key(root)
    with _GUARD:
        if key in _HELD:
            return _HELD[key].holder
        path = key / LOCK_FILE
        if not path.is_file():
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:  # a shared lock is refused only while a writer holds the exclusive one
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _read_holder(fd)
            return None
        finally:
            os.close(fd)  # releases the probe's shared lock too


def held_by_other(root: Path) -> LockHolder | None:
    """The holder when another process writes into the project, else None."""
    holder = lock_holder(root)
    return None if holder is None or _key(root) in _HELD else holder


def check_writable(root: Path) -> None:
    """Raise ProjectLocked when another process holds the project (e.g. before saving an edit)."""
    holder = held_by_other(root)
    if holder is not None:
        raise _refusal(Path(root), holder)
