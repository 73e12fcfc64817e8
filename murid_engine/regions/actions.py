"""Region actions — assign a class, accept the pseudo-label, mark ignore — written as edits.

A region action changes the project's edit map of the image (edits/<stem>.png, the format of
murid_engine.curriculum.rounds): the same files the Review view's brush writes. Edits take
precedence over every round's labels in `training_maps`, so an assigned or accepted region is
trained on with full weight by the next curriculum round and by the distillation, whatever the
thresholds are (an accepted region is never re-thresholded away).

    assign  every pixel of the region gets the class
    accept  the region's pixels not yet edited get the round's prediction (argmax before
            thresholds): the person says what the model predicts there is right
    ignore  every pixel of the region is not trained on

The functions on arrays (`apply_action`) are what the GUI uses on its in-memory edit (its undo
history records the change); `region_action` is the same on the project's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE, PREDICTIONS_DIR
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.project import Project

from .scoring import RoundRegions


class Action(str, Enum):
    ASSIGN = "assign"
    ACCEPT = "accept"
    IGNORE = "ignore"


def apply_action(edit: np.ndarray, mask: np.ndarray, action: Action, *, class_id: int | None = None,
                 pred: np.ndarray | None = None) -> np.ndarray:
    """A new edit map: `edit` (EDIT_NONE = not edited) with `action` done on the pixels of `mask`."""
    out = edit.copy()
    if action is Action.ASSIGN:
        if class_id is None:
            raise ValueError("assigning a class to a region needs class_id")
        out[mask] = class_id
    elif action is Action.ACCEPT:
        if pred is None:
            raise ValueError("accepting a region needs the round's prediction")
        fresh = mask & (edit == EDIT_NONE)
        out[fresh] = pred[fresh]
    else:
        out[mask] = EDIT_IGNORE
    return out


def verified_pixels(edit: np.ndarray | None, num_classes: int) -> int:
    """Pixels a person gave a class (painted, assigned or accepted); ignore is not counted."""
    return 0 if edit is None else int(np.count_nonzero(edit < num_classes))


@dataclass(frozen=True)
class RegionChange:
    stem: str
    region: int
    action: Action
    pixels: int  # pixels of the region


def region_action(project: Project, r: int, stem: str, region: int, action: Action | str,
                  class_id: int | None = None, regions: RoundRegions | None = None) -> RegionChange:
    """Do `action` on region `region` of image `stem` of round r, saving the image's edit."""
    action = Action(action)
    n = project.config.model.num_classes
    if action is Action.ASSIGN and (class_id is None or not 0 <= class_id < n):
        raise UserError(f"class {class_id} is not a train id 0..{n - 1}")
    regions = regions or RoundRegions.open(project.round_dir(r))
    region_map = regions.region_map(stem)
    mask = region_map == region
    if not mask.any():
        raise UserError(f"image '{stem}' of round {r} has no region {region}")
    pred = read_index_png(project.round_dir(r) / PREDICTIONS_DIR / f"{stem}.png")
    edit = project.load_edit(stem)
    if edit is None:
        edit = np.full(region_map.shape, EDIT_NONE, np.uint8)
    elif edit.shape != region_map.shape:
        raise UserError(f"the edit of '{stem}' is {edit.shape[1]}x{edit.shape[0]}, its regions "
                        f"{region_map.shape[1]}x{region_map.shape[0]}")
    project.save_edit(stem, apply_action(edit, mask, action, class_id=class_id, pred=pred))
    return RegionChange(stem, region, action, int(mask.sum()))
