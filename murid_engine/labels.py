"""The Cityscapes label definitions: label ids, the 19 train ids, names and palette.

Values follow the official table of cityscapesScripts (helpers/labels.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE = 255
NUM_CLASSES = 19
# A round's training maps store the user's class c as 128 + c, below NO_LOSS = 254
# (training/round_labels.py): a model may have at most this many classes.
MAX_CLASSES = 126


class Label(NamedTuple):
    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, IGNORE, (0, 0, 0)),
    Label("ego vehicle", 1, IGNORE, (0, 0, 0)),
    Label("rectification border", 2, IGNORE, (0, 0, 0)),
    Label("out of roi", 3, IGNORE, (0, 0, 0)),
    Label("static", 4, IGNORE, (0, 0, 0)),
    Label("dynamic", 5, IGNORE, (111, 74, 0)),
    Label("ground", 6, IGNORE, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, IGNORE, (250, 170, 160)),
    Label("rail track", 10, IGNORE, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, IGNORE, (180, 165, 180)),
    Label("bridge", 15, IGNORE, (150, 100, 100)),
    Label("tunnel", 16, IGNORE, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, IGNORE, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, IGNORE, (0, 0, 90)),
    Label("trailer", 30, IGNORE, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
)
# License plate has id -1 in the official table; stored in a uint8 PNG it reads as 255.
MAX_LABEL_ID = 33

_TRAIN = sorted((l for l in LABELS if l.train_id != IGNORE), key=lambda l: l.train_id)
CLASS_NAMES: tuple[str, ...] = tuple(l.name for l in _TRAIN)
PALETTE = np.array([l.color for l in _TRAIN], dtype=np.uint8)  # (19, 3) RGB

# SYNTHIA protocols: 16 classes drop terrain, truck, train; 13 also drop wall, fence, pole.
CLASSES_16: tuple[int, ...] = tuple(c for c in range(NUM_CLASSES) if c not in (9, 14, 16))
CLASSES_13: tuple[int, ...] = tuple(c for c in CLASSES_16 if c not in (3, 4, 5))


def _lut(pairs: dict[int, int]) -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for src, dst in pairs.items():
        lut[src] = dst
    return lut


# Lookup tables: index with a uint8 label image to map it in one vectorised step.
LABEL_ID_TO_TRAIN_ID = _lut({l.id: l.train_id for l in LABELS})
TRAIN_ID_TO_LABEL_ID = _lut({l.train_id: l.id for l in _TRAIN})

# SYNTHIA-RAND-CITYSCAPES class ids (its README) -> train ids; the mapping every UDA code base
# uses (ADVENT, DAFormer). 0 void, 13 parking-slot, 14 road-work, 22 lanemarking are ignored.
SYNTHIA_MAX_ID = 22
SYNTHIA_ID_TO_TRAIN_ID = _lut(
    {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9,
     1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18}
)


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Train-id map (H, W) -> RGB image (H, W, 3) in the Cityscapes palette; ignore is black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:NUM_CLASSES] = PALETTE
    return table[train_ids]
