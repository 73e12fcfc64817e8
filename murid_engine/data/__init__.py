"""Dataset readers for the layouts of the real downloads, chosen by `KIND:PATH`."""

from __future__ import annotations

from pathlib import Path

from murid_engine.errors import UserError

from .base import Dataset, Sample
from .cityscapes import CityscapesDataset
from .folder import FolderDataset
from .gta5 import Gta5Dataset
from .synthcity import open_synthcity
from .synthia import SynthiaDataset

KINDS = ("gta5", "synthia", "cityscapes", "folder", "synthcity")
# Layouts that are one set of images with no splits; they refuse any split but 'all'.
SPLITLESS_KINDS = ("gta5", "synthia")


def parse_spec(spec: str) -> tuple[str, Path]:
    """`KIND:PATH` -> (kind, path); the kind must be one of KINDS."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise UserError(f"'{spec}' is not KIND:PATH (kinds: {', '.join(KINDS)})")
    if kind not in KINDS:
        raise UserError(f"unknown dataset kind '{kind}' in '{spec}' (kinds: {', '.join(KINDS)})")
    return kind, Path(path).expanduser()


def resolve_split(spec: str, split: str | None, default: str) -> str | None:
    """The split a command should open: the user's, else `default` where the kind has splits."""
    if split is not None:
        return split
    kind, _ = parse_spec(spec)
    return None if kind in SPLITLESS_KINDS else default


def open_dataset(spec: str, split: str | None = None) -> Dataset:
    """Open a dataset; `split` is None for the kind's default split."""
    kind, root = parse_spec(spec)
    if kind == "gta5":
        return Gta5Dataset.open(root, split)
    if kind == "synthia":
        return SynthiaDataset.open(root, split)
    if kind == "cityscapes":
        return CityscapesDataset.open(root, split)
    if kind == "folder":
        return FolderDataset.open(root, split)
    return open_synthcity(root, split)


__all__ = ["Dataset", "Sample", "KINDS", "SPLITLESS_KINDS", "parse_spec", "resolve_split", "open_dataset"]
