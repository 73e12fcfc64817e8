"""Writers of tiny datasets in the OFFICIAL on-disk formats, for tests.

Deliberately independent of the engine's own writers (murid_engine.imageio): files are written
with Pillow and OpenCV directly, the way the real downloads store them, so that a reader bug is
not hidden by a writer with the same bug.

- GTA5: labels are palette ('P') PNGs whose INDICES are Cityscapes label ids and whose palette
  holds the Cityscapes colours (reading the colours instead of the indices gives wrong values).
- SYNTHIA-RAND-CITYSCAPES: labels are 16-bit 3-channel PNGs, class id in R, instance id in G.
- Cityscapes: 8-bit grey `*_gtFine_labelIds.png`, with the `*_gtFine_color.png` beside it.
- folder: train ids as a grey 'L' PNG (or palette PNG with palette=True).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Cityscapes colours by label id 0..33 (cityscapesScripts helpers/labels.py), written out here
# rather than imported so that the test data does not depend on the engine's table.
CITYSCAPES_COLORS: list[tuple[int, int, int]] = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]


def _palette_bytes() -> list[int]:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return table.reshape(-1).tolist()


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(path)
    else:  # jpg and friends through OpenCV, BGR order
        assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_palette(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="P")
    img.putpalette(_palette_bytes())
    img.save(path)


def _write_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="L").save(path)


def write_gta5(root: Path, items: list[tuple[str, np.ndarray, np.ndarray | None]]) -> Path:
    """items: (stem e.g. '00001', rgb uint8 HxWx3, label ids uint8 HxW or None for no label)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, rgb, label_ids in items:
        _write_rgb(root / "images" / f"{stem}.png", rgb)
        if label_ids is not None:
            _write_palette(root / "labels" / f"{stem}.png", label_ids)
    return root


def write_synthia(root: Path, items: list[tuple[str, np.ndarray, np.ndarray | None]]) -> Path:
    """items: (stem e.g. '0000001', rgb uint8 HxWx3, SYNTHIA class ids HxW or None).

    The label is a 16-bit 3-channel PNG: R = class id, G = an instance id, B = 0.
    """
    root = Path(root)
    (root / "RGB").mkdir(parents=True, exist_ok=True)
    (root / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    for stem, rgb, class_ids in items:
        _write_rgb(root / "RGB" / f"{stem}.png", rgb)
        if class_ids is None:
            continue
        h, w = class_ids.shape
        instance = (np.arange(h * w, dtype=np.uint16).reshape(h, w) % 7) * 1000
        bgr = np.stack([np.zeros((h, w), np.uint16), instance, class_ids.astype(np.uint16)], -1)
        assert cv2.imwrite(str(root / "GT" / "LABELS" / f"{stem}.png"), bgr)
    return root


def write_cityscapes(
    root: Path, split: str, items: list[tuple[str, str, np.ndarray, np.ndarray | None]]
) -> Path:
    """items: (city, stem e.g. 'aachen_000000_000019', rgb uint8 HxWx3, label ids HxW or None).

    Writes leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png and, for a label,
    gtFine/{split}/{city}/{stem}_gtFine_labelIds.png plus the official _gtFine_color.png.
    """
    root = Path(root)
    (root / "leftImg8bit" / split).mkdir(parents=True, exist_ok=True)
    for city, stem, rgb, label_ids in items:
        _write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb)
        if label_ids is None:
            continue
        gt = root / "gtFine" / split / city
        _write_grey(gt / f"{stem}_gtFine_labelIds.png", label_ids)
        colors = np.zeros((256, 3), np.uint8)
        colors[: len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
        _write_rgb(gt / f"{stem}_gtFine_color.png", colors[label_ids])
    return root


def write_folder(
    root: Path,
    items: list[tuple[str, np.ndarray, np.ndarray | None]],
    suffix: str = ".png",
    palette: bool = False,
) -> Path:
    """items: (stem, rgb uint8 HxWx3, train ids uint8 HxW or None); images get `suffix`."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem, rgb, train_ids in items:
        _write_rgb(root / "images" / f"{stem}{suffix}", rgb)
        if train_ids is None:
            continue
        path = root / "labels" / f"{stem}.png"
        (_write_palette if palette else _write_grey)(path, train_ids)
    return root


# ------------------------------------------------------------------ damaging files on purpose


def corrupt(path: Path) -> Path:
    """Replace a file by garbage bytes, keeping its name."""
    Path(path).write_bytes(b"this is not an image at all" * 10)
    return path


def truncate(path: Path) -> Path:
    """Cut a file's bytes in half, as an interrupted download would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return path


def rgb_image(h: int = 16, w: int = 32, seed: int = 0) -> np.ndarray:
    """A small deterministic RGB image."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
