"""Label masks to and from other annotation tools, in the Cityscapes layout.

Export writes a round's labels with the user's edits applied (what the person sees in the
Review view), one pair per image:

    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png   8-bit grey Cityscapes label ids,
                                                      0 (unlabeled) where nothing is kept
    gtFine/<split>/<city>/<stem>_gtFine_color.png      the official colours (black = unlabeled)

`<split>` is the project's target split; `<city>` the image's city folder for a Cityscapes
target, `murid` otherwise. Masks have the round's label size (data.target_size, else the
image's own size).

Import reads corrected masks back (`labelids:` Cityscapes label ids, `trainids:` train ids with
255 unlabelled) and writes, as edits, exactly the pixels whose class differs from what export
would write now; unlabelled pixels are "not corrected". So exporting and importing again
changes nothing, and a mask fixed in CVAT changes only what was fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from murid_engine.curriculum.round_summary import read_round_summary
from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE, LABELS_DIR
from murid_engine.data.gta5 import VALID_LABEL_IDS
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png, write_grey_png, write_rgb
from murid_engine.labels import IGNORE, LABEL_ID_TO_TRAIN_ID, LABELS, TRAIN_ID_TO_LABEL_ID
from murid_engine.project import Project

LABEL_SUFFIX = "_gtFine_labelIds.png"
COLOR_SUFFIX = "_gtFine_color.png"
TRAIN_SUFFIX = "_gtFine_labelTrainIds.png"
KINDS = ("labelids", "trainids")
UNLABELED_ID = 0  # Cityscapes 'unlabeled'

_COLORS = np.zeros((256, 3), np.uint8)
for _label in LABELS:
    _COLORS[_label.id] = _label.color


def _round(project: Project, r: int | None) -> int:
    r = project.latest_round() if r is None else r
    if r is None:
        raise UserError(f"{project.root} has no complete pseudo-label round to export")
    if r not in project.rounds():
        raise UserError(f"{project.root} has no complete pseudo-label round {r} (rounds: "
                        f"{', '.join(map(str, project.rounds())) or 'none'})")
    return r


def current_labels(project: Project, r: int, stem: str) -> np.ndarray:
    """Train ids as the Review view shows them: the round's kept labels, edits on top,
    IGNORE where nothing is kept or the user marked ignore."""
    labels = read_index_png(project.round_dir(r) / LABELS_DIR / f"{stem}.png")
    edit = project.load_edit(stem)
    if edit is not None and edit.shape == labels.shape:
        labels = np.where(edit == EDIT_NONE, labels, edit).astype(np.uint8)
        labels[edit == EDIT_IGNORE] = IGNORE
    return labels


def _cities(project: Project) -> dict[str, str]:
    """stem -> city folder of a Cityscapes target; empty for other kinds."""
    cfg = project.config.data
    if cfg.target.partition(":")[0] != "cityscapes":
        return {}
    from murid_engine.data import open_dataset

    try:
        target = open_dataset(cfg.target, cfg.target_split)
    except UserError:  # the images moved: export still works, under one folder
        return {}
    return {s.stem: s.image.parent.name for s in target.samples}


@dataclass(frozen=True)
class ExportSummary:
    round: int
    images: int
    labelled_pixels: int
    pixels: int
    folder: Path


def export_masks(project: Project, out: Path, r: int | None = None) -> ExportSummary:
    r = _round(project, r)
    stems = read_round_summary(project.round_dir(r)).stems
    split = project.config.data.target_split or "train"
    cities = _cities(project)
    labelled = pixels = 0
    for stem in stems:
        train = current_labels(project, r, stem)
        ids = TRAIN_ID_TO_LABEL_ID[train]
        ids[train == IGNORE] = UNLABELED_ID
        folder = Path(out) / "gtFine" / split / cities.get(stem, "murid")
        write_grey_png(folder / f"{stem}{LABEL_SUFFIX}", ids)
        write_rgb(folder / f"{stem}{COLOR_SUFFIX}", _COLORS[ids])
        labelled += int(np.count_nonzero(train != IGNORE))
        pixels += train.size
    return ExportSummary(r, len(stems), labelled, pixels, Path(out))


def parse_masks(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind.lower() not in KINDS or not path:
        raise UserError(f"--masks must be KIND:PATH with KIND one of {', '.join(KINDS)}, not '{spec}'")
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder of masks")
    return kind.lower(), path


def _mask_files(kind: str, folder: Path) -> Iterator[tuple[str, Path]]:
    suffixes = (LABEL_SUFFIX,) if kind == "labelids" else (TRAIN_SUFFIX, ".png")
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.png")):
        if path.name.startswith(".") or path.name.endswith(COLOR_SUFFIX):
            continue
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is None:
            continue
        stem = path.name[: -len(suffix)]
        if stem in seen:
            raise UserError(f"{path} and {seen[stem]} are masks of the same image '{stem}'")
        seen[stem] = path
        yield stem, path


def read_mask(kind: str, path: Path, num_classes: int) -> np.ndarray:
    """Train ids with IGNORE = not corrected, validated."""
    values = read_index_png(path)
    if kind == "labelids":
        bad = ~VALID_LABEL_IDS[values]
        if bad.any():
            raise UserError(f"{path} holds values {np.unique(values[bad])[:5].tolist()} that are "
                            "not Cityscapes label ids (0..33, 255)")
        return LABEL_ID_TO_TRAIN_ID[values]
    bad = (values >= num_classes) & (values != IGNORE)
    if bad.any():
        raise UserError(f"{path} holds values {np.unique(values[bad])[:5].tolist()} that are not "
                        f"train ids (0..{num_classes - 1}, 255 = unlabelled)")
    return values


@dataclass(frozen=True)
class ImportSummary:
    round: int
    masks: int
    changed_images: int
    corrected_pixels: int


def import_masks(project: Project, kind: str, folder: Path, r: int | None = None) -> ImportSummary:
    """Write the masks' corrections as edits (see the module doc); every mask is checked first,
    so a bad file leaves the project unchanged."""
    r = _round(project, r)
    stems = set(read_round_summary(project.round_dir(r)).stems)
    n = project.config.model.num_classes
    files = list(_mask_files(kind, Path(folder)))
    if not files:
        pattern = f"*{LABEL_SUFFIX}" if kind == "labelids" else f"*{TRAIN_SUFFIX} or *.png"
        raise UserError(f"{folder} holds no masks ({pattern})")
    plans: list[tuple[str, np.ndarray]] = []
    corrected = 0
    for stem, path in files:  # validate and plan everything before writing anything
        if stem not in stems:
            raise UserError(f"{path} names image '{stem}', which is not in round {r}")
        mask = read_mask(kind, path, n)
        now = current_labels(project, r, stem)
        if mask.shape != now.shape:
            raise UserError(f"{path} is {mask.shape[1]}x{mask.shape[0]}, but the round's label of "
                            f"'{stem}' is {now.shape[1]}x{now.shape[0]}")
        changed = (mask != IGNORE) & (mask != now)
        if changed.any():
            edit = project.load_edit(stem)
            edit = np.full(now.shape, EDIT_NONE, np.uint8) if edit is None or edit.shape != now.shape \
                else edit.copy()
            edit[changed] = mask[changed]
            plans.append((stem, edit))
            corrected += int(changed.sum())
    for stem, edit in plans:
        project.save_edit(stem, edit)
    return ImportSummary(r, len(files), len(plans), corrected)
