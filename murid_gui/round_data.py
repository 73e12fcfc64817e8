"""Reading a round for display, off the GUI thread: round.json, the target images and their ground
truth by stem, the edits (no Qt; the views call these through their reader thread)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from murid_engine.curriculum.round_summary import RoundSummary, read_round_summary
from murid_engine.curriculum.rounds import load_round_image
from murid_engine.errors import UserError
from murid_engine.jobs import Preview
from murid_engine.project import EDIT_NONE, Overrides, Project

from .image_list import summary_columns


class TargetImages:
    """The project's target-train images by stem; opened (file listing only) on first use."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._dataset = None
        self._index: dict[str, int] = {}

    def _open(self):
        if self._dataset is None:
            from murid_engine.data import open_dataset

            cfg = self.project.config
            self._dataset = open_dataset(cfg.data.target, cfg.data.target_split)
            self._index = {s.stem: i for i, s in enumerate(self._dataset.samples)}
        return self._dataset

    def paths(self) -> dict[str, str]:
        """stem -> image file (empty when the dataset cannot be opened: it moved)."""
        try:
            return {s.stem: str(s.image) for s in self._open().samples}
        except (UserError, OSError):
            return {}

    def load(self, stem: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, str | None]:
        """(RGB image, ground truth or None, a problem or None) at the round's size `shape`."""
        h, w = shape
        try:
            ds = self._open()
            index = self._index[stem]
            image = ds.read_image(index)
            gt = ds.read_label(index) if ds.samples[index].label is not None else None
        except (UserError, KeyError, OSError) as exc:
            # The dataset moved: the labels can still be reviewed, on a blank image.
            return np.zeros((h, w, 3), np.uint8), None, f"image not found ({exc})"
        if image.shape[:2] != (h, w):  # the round was labelled at data.target_size
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            if gt is not None:
                gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
        return image, gt, None


def round_preview(project: Project, r: int, n: int = 4) -> Preview | None:
    """The first `n` images of round r as a Preview (what the strip shows before training runs)."""
    try:
        stems = read_round_summary(project.round_dir(r)).stems[:n]
        pairs = [load_round_image(project.round_dir(r), s) for s in stems]
        if not pairs or len({p.shape for p, _ in pairs}) != 1:
            return None
        images = TargetImages(project)
        rgb = [images.load(s, pairs[0][0].shape)[0] for s in stems]
        return Preview(f"round {r} pseudo-labels", 0, tuple(stems), np.stack(rgb),
                       np.stack([p for p, _ in pairs]),
                       np.stack([c for _, c in pairs]).astype(np.float32) / 255.0)
    except (UserError, OSError, ValueError, KeyError):
        return None


@dataclass
class RoundView:
    """What the Review view needs of one round, read together off the GUI thread."""
    round: int
    info: RoundSummary  # round.json, with each image's edited-pixel count as the edits are now
    overrides: Overrides
    paths: dict[str, str]  # stem -> target image file (the list's tooltips)
    columns: np.ndarray  # the image list's number columns (image_list.summary_columns)


def read_round_view(project: Project, r: int, images: TargetImages) -> RoundView:
    info = read_round_summary(project.round_dir(r))
    edited = set(project.edited_stems())
    for stem in info.images:  # the edited-pixel count of the edits as they are now
        edit = project.load_edit(stem) if stem in edited else None
        info.images[stem] = replace(info.images[stem], edited_pixels=0 if edit is None else
                                    int(np.count_nonzero(edit != EDIT_NONE)))
    return RoundView(r, info, project.load_overrides(), images.paths(), summary_columns(info.images))


@dataclass
class ImageView:
    """One image of a round as the canvas shows it, read off the GUI thread."""
    round: int
    stem: str
    pred: np.ndarray  # argmax train ids
    level: np.ndarray  # confidence levels
    image: np.ndarray  # RGB at the round's size (blank when the dataset moved)
    gt: np.ndarray | None
    edit: np.ndarray | None  # the user's edit, None when none (or of another size)
    problem: str | None  # why the image itself could not be shown
    region_map: np.ndarray | None  # the image's superpixels, when the round's regions are open


def read_image_view(project: Project, r: int, stem: str, images: TargetImages,
                    regions=None) -> ImageView:
    pred, level = load_round_image(project.round_dir(r), stem)
    image, gt, problem = images.load(stem, pred.shape)
    edit = project.load_edit(stem)
    if edit is not None and edit.shape != pred.shape:
        edit = None
    region_map = None
    if regions is not None:
        try:
            region_map = regions.region_map(stem)
        except (UserError, OSError, ValueError, KeyError):
            region_map = None  # the queue says what is wrong when it is used
    return ImageView(r, stem, pred, level, image, gt, edit, problem, region_map)
