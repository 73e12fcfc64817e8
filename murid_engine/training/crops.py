"""Random scale, crop and flip of one uint8 image and its label map, in one resampling step.

Rescaling a whole image and then cropping it resamples pixels that are thrown away (a 1280×720
GTA5 image scaled by 1.25 is 1600×900, of which a 1024×512 crop keeps a third), and doing it in
float costs four times the memory traffic. So the crop window is mapped back into the stored
image and only the crop's pixels are resampled, in uint8, by one affine warp: bilinear for the
image, nearest for labels (no invented class ids), with the half-pixel convention and edge
clamping of cv2.resize / F.interpolate(align_corners=False), so the result is that of "resize,
then crop". Padding (a scaled image smaller than the crop) is black, its labels `fill`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .batches import AugmentConfig

NO_RESCALE = 1e-3  # a scale this close to 1 is a plain crop (no resampling)


@dataclass(frozen=True)
class Crop:
    """Where one crop comes from: the scale, the top-left corner in the scaled image, a flip."""
    scale: float
    y0: int
    x0: int
    flip: bool


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    if abs(scale - 1.0) <= NO_RESCALE:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


def draw_crop(rng: np.random.Generator, h: int, w: int, aug: AugmentConfig) -> Crop:
    """A random crop of an h×w image per `aug` (the draws are always the same four, in order)."""
    cw, ch = aug.crop
    scale = float(rng.uniform(*aug.scale))
    sh, sw = scaled_size(h, w, scale)
    y0 = int(rng.integers(0, max(sh - ch, 0) + 1))
    x0 = int(rng.integers(0, max(sw - cw, 0) + 1))
    flip = bool(rng.random() < 0.5) and aug.flip
    return Crop(scale, y0, x0, flip)


def _apply(array: np.ndarray, crop: Crop, size: tuple[int, int], interpolation: int,
           fill: int) -> np.ndarray:
    cw, ch = size
    h, w = array.shape[:2]
    sh, sw = scaled_size(h, w, crop.scale)
    oh, ow = min(ch, sh - crop.y0), min(cw, sw - crop.x0)  # the part of the crop inside the image
    if (sh, sw) == (h, w):
        part = array[crop.y0:crop.y0 + oh, crop.x0:crop.x0 + ow]
    else:
        # Output pixel (x, y) of the crop is pixel (x + x0, y + y0) of the scaled image, whose
        # centre lies at ((x + x0 + 0.5) * w / sw - 0.5, ...) in the stored image.
        fx, fy = w / sw, h / sh
        m = np.array([[fx, 0.0, (crop.x0 + 0.5) * fx - 0.5],
                      [0.0, fy, (crop.y0 + 0.5) * fy - 0.5]])
        part = cv2.warpAffine(array, m, (ow, oh), flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    if (oh, ow) != (ch, cw):
        out = np.full((ch, cw) + array.shape[2:], fill, dtype=array.dtype)
        out[:oh, :ow] = part
        part = out
    return part[:, ::-1] if crop.flip else part


def crop_image(image: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The (h, w, 3) uint8 crop of `size` (w, h) of an H×W×3 uint8 image; padding is black."""
    return _apply(image, crop, size, cv2.INTER_LINEAR, 0)


def crop_label(label: np.ndarray, crop: Crop, size: tuple[int, int], fill: int) -> np.ndarray:
    """The same crop of an H×W uint8 label map (nearest neighbour); padding is `fill`."""
    return _apply(label, crop, size, cv2.INTER_NEAREST, fill)
