"""Checkpoints: weights, config, optimiser, stage, iteration and RNG state in one torch file.

House rule: a checkpoint is only ever read with ``torch.load(..., weights_only=True)``, so a file
from elsewhere can hold tensors and plain values but never run code. Everything saved here is
therefore plain: the config as a dict (`config.to_dict`), RNG states as lists, tensors and a JSON
string. A file is written whole into memory, then renamed into place (`atomic_write_bytes`), so
a kill -9 mid-save leaves the previous checkpoint intact.

Resume points (`latest*.pt`) also keep the version they replace beside them as
`<name>.prev.pt`, so a resume point that a disk damages later still has a good predecessor
(`readable_checkpoint` and Project.resume_checkpoint fall back to it).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from murid_engine.config import from_dict, to_dict
from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes
from murid_engine.run_config import RunConfig

FORMAT = "murid-checkpoint"
VERSION = 1  # raise when the layout changes; older versions stay readable

PREVIOUS = ".prev"  # latest.pt's predecessor: latest.prev.pt
ROLLING_PREFIX = "latest"  # the resume points, whose predecessor is kept

StateDict = dict[str, torch.Tensor]
# What `weights_only=True` accepts; anything else would make an unloadable checkpoint.
_SAFE_LEAVES = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device)


@dataclass
class Checkpoint:
    """A loaded checkpoint; `config` is validated, so it rebuilds its models alone."""

    path: Path
    config: RunConfig
    stage: str  # the stage running when it was saved (or the stage a final file ends)
    iteration: int  # optimiser steps done within `stage`
    models: dict[str, StateDict]  # e.g. {'teacher': ..., 'student': ..., 'ema': ...}
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None  # `capture_rng` output; give it to `restore_rng`
    extra: dict[str, Any] = field(default_factory=dict)  # trainer's own plain values
    version: int = VERSION

    def model_state(self, which: str) -> StateDict:
        """The state dict of one model, with a clear error when this file does not hold it."""
        if which not in self.models:
            held = ", ".join(self.models) or "none"
            raise UserError(f"checkpoint {self.path} holds no '{which}' weights (it holds: {held})")
        return self.models[which]


# ------------------------------------------------------------------------------------- saving


def _check_plain(obj: Any, where: str) -> None:
    """Refuse, at save time, a value that weights_only loading would reject later."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {key!r} at {where} must be a string or an integer")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, _SAFE_LEAVES):
        raise TypeError(f"checkpoint value at {where} is a {type(obj).__name__}; "
                        "only tensors and plain values (str, int, float, bool, None) load safely")


def save_checkpoint(path: Path, *, config: RunConfig, models: dict[str, nn.Module | StateDict],
                    stage: str, iteration: int,
                    optimizer: torch.optim.Optimizer | dict[str, Any] | None = None,
                    rng: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically; `models` maps a name to a module or its state dict."""
    if not stage or iteration < 0:
        raise ValueError(f"a checkpoint needs a stage and an iteration >= 0, not {stage!r}, {iteration}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(config),
        "stage": stage,
        "iteration": int(iteration),
        "models": {name: (m.state_dict() if isinstance(m, nn.Module) else m) for name, m in models.items()},
        "optimizer": optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer,
        "rng": rng,
        "extra": extra or {},
    }
    _check_plain(payload, "checkpoint")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    if path.name.startswith(ROLLING_PREFIX):
        keep_previous(path)
    atomic_write_bytes(path, buffer.getvalue())


def previous_path(path: Path) -> Path:
    """checkpoints/latest.pt -> checkpoints/latest.prev.pt"""
    path = Path(path)
    return path.with_name(f"{path.stem}{PREVIOUS}{path.suffix}")


def _whole(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def keep_previous(path: Path) -> None:
    """Make `path`'s current file its `.prev` version, while `path` itself stays in place.

    A hard link renamed over the old `.prev` file: at every moment both names hold a whole
    checkpoint (a kill between the steps leaves the old pair). A file that is not even a whole
    zip is not kept: it would push out a good predecessor.
    """
    if not path.is_file() or not _whole(path):
        return
    prev = previous_path(path)
    link = prev.with_name(f".{prev.name}.link.tmp")  # a temp name clean_temp_files knows
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:  # a file system without hard links: keep no predecessor rather than copy
        return
    try:
        os.replace(link, prev)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------ loading


def _corrupt(path: Path, why: str) -> UserError:
    prev = previous_path(path)
    if path.name == f"{ROLLING_PREFIX}.pt" and prev.is_file():  # Project.latest_checkpoint falls back
        advice = f"--resume continues from the previous one, {prev}"
    elif path.name.startswith(ROLLING_PREFIX) and PREVIOUS not in path.stem and prev.is_file():
        advice = f"the previous one is kept: move {prev.name} over {path.name} to resume from it"
    elif path.name.startswith(ROLLING_PREFIX) and PREVIOUS not in path.stem:
        advice = ("there is no earlier resume point: delete it, and --resume restarts the training "
                  "it belonged to (teacher or student) from its beginning")
    else:
        advice = "delete it and train again (in a new project folder if it is the project's only checkpoint)"
    return UserError(f"checkpoint {path} is corrupt or truncated ({why}); {advice}")


def _read_payload(path: Path) -> Any:
    """The unpickled content, with one-sentence errors for each way a file can be wrong."""
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            raise UserError(f"checkpoint {path} is an empty file (was its write interrupted?)")
        if not zipfile.is_zipfile(path):
            if head == b"PK\x03\x04":  # a zip's start without its end: cut off
                raise _corrupt(path, "the file ends before its zip directory")
            raise UserError(f"{path} is not a MURID checkpoint (not a PyTorch zip file: "
                            "damaged, or another kind of file)")
        # torch does not verify the CRC32s it writes; zipfile does, so flipped bits are caught
        # here instead of loading as silently wrong weights.
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise _corrupt(path, f"the checksum of {bad} does not match")
        return torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise UserError(f"checkpoint {path} was refused for safety: it holds Python objects (code) "
                            "besides tensors and plain values, and such files are never loaded") from None
        raise _corrupt(path, "its content cannot be unpickled") from None
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, str(exc).splitlines()[0][:120] or type(exc).__name__) from None


def _foreign(path: Path, payload: Any) -> UserError:
    if not isinstance(payload, dict):
        return UserError(f"{path} is not a MURID checkpoint (it holds a {type(payload).__name__})")
    if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return UserError(f"{path} is not a MURID checkpoint (it looks like a plain state dict; "
                         "ImageNet weights go in model.pretrained)")
    keys = ", ".join(map(str, list(payload)[:6])) or "none"
    return UserError(f"{path} is not a MURID checkpoint (it has no MURID format marker; keys: {keys})")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and check a checkpoint (always with weights_only=True, on the CPU)."""
    path = Path(path)
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _foreign(path, payload)
    version = payload.get("version")
    if not isinstance(version, int) or version < 1:
        raise _corrupt(path, f"its format version is {version!r}")
    if version > VERSION:
        raise UserError(f"checkpoint {path} has format version {version}, newer than this MURID Studio "
                        f"reads (up to {VERSION}); update MURID Studio to load it")
    expected = {"config": dict, "stage": str, "iteration": int, "models": dict, "extra": dict}
    for key, kind in expected.items():
        if not isinstance(payload.get(key), kind):
            raise _corrupt(path, f"its '{key}' entry is missing or not a {kind.__name__}")
    for name, state in payload["models"].items():
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise _corrupt(path, f"the weights of '{name}' are not a state dict")
    where = f"checkpoint {path}"
    config = from_dict(RunConfig, payload["config"], where)
    try:
        config.validate()
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return Checkpoint(path=path, config=config, stage=payload["stage"], iteration=payload["iteration"],
                      models=payload["models"], optimizer=payload.get("optimizer"), rng=payload.get("rng"),
                      extra=payload["extra"], version=version)


def readable_checkpoint(path: Path) -> tuple[Checkpoint | None, UserError | None]:
    """(the checkpoint, None) when `path` loads, else (None, the one-sentence reason)."""
    try:
        return load_checkpoint(path), None
    except UserError as exc:
        return None, exc


# ---------------------------------------------------------------------------------- RNG state


def _array_to_json(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in an RNG state")


def _json_to_array(obj: dict) -> Any:
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def _numpy_state(state: dict) -> str:
    # A JSON string: the 128-bit integers of PCG64 and the arrays of MT19937 both survive it,
    # and weights_only loading accepts a string.
    return json.dumps(state, default=_array_to_json)


def capture_rng(np_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Every random state a run draws from: Python, NumPy (global and `np_rng`), torch, CUDA."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy_global": _numpy_state(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if np_rng is not None:
        state["numpy"] = _numpy_state(np_rng.bit_generator.state)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], np_rng: np.random.Generator | None = None) -> None:
    """Put back what `capture_rng` saw; `np_rng` is set in place (its bit generator must match)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np.random.set_state(json.loads(state["numpy_global"], object_hook=_json_to_array))
    torch.set_rng_state(state["torch"].cpu())
    if np_rng is not None and "numpy" in state:
        saved = json.loads(state["numpy"], object_hook=_json_to_array)
        kind = type(np_rng.bit_generator).__name__
        if saved.get("bit_generator") != kind:
            raise ValueError(f"the saved NumPy state is {saved.get('bit_generator')}, the generator {kind}")
        np_rng.bit_generator.state = saved
    # CUDA states only go back onto the same number of devices; elsewhere they mean nothing.
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
