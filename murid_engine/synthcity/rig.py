"""The camera rig: roll, the ego-vehicle hood and the rectification border, all void (255).

Cityscapes frames show the recording car's bonnet at the bottom and a black border left by
rectifying the stereo pair; both are labelled "ego vehicle" / "rectification border", ignored in
training and evaluation. GTA5 frames have neither.
"""

from __future__ import annotations

import cv2
import numpy as np

from murid_engine.labels import IGNORE

from .domains import Rig


def _roll(render: np.ndarray, label: np.ndarray, degrees: float):
    h, w = label.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    render = cv2.warpAffine(render, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=IGNORE)
    return render, label


def hood_mask(h: int, w: int, height: float, bulge: float) -> np.ndarray:
    """The bonnet: a wide arc rising `height` of the frame at the centre, lower at the sides."""
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w * 2.0 - 1.0
    top = h * (1.0 - height * (1.0 - bulge * xs ** 2))
    return (np.arange(h, dtype=np.float32)[:, None] + 0.5) >= top[None, :]


def border_mask(h: int, w: int, border: float) -> np.ndarray:
    """Outside a rounded rectangle inset by `border` of each side (a rectified frame's edge)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn = (xx + 0.5 - w / 2) / (w / 2 * (1.0 - border))
    yn = (yy + 0.5 - h / 2) / (h / 2 * (1.0 - border))
    return (np.abs(xn) ** 12 + np.abs(yn) ** 12) > 1.0


def apply_rig(render: np.ndarray, label: np.ndarray, rig: Rig, rng: np.random.Generator):
    """(render, label) as seen through the rig; the hood and border pixels get label 255."""
    h, w = label.shape
    if rig.roll_deg:
        render, label = _roll(render, label, rng.uniform(-rig.roll_deg, rig.roll_deg))
    if rig.hood[1] > 0:
        hood = hood_mask(h, w, rng.uniform(*rig.hood), bulge=0.6)
        shade = np.linspace(1.15, 0.7, h, dtype=np.float32)[:, None, None]  # light on the bonnet
        render = np.where(hood[..., None], np.array(rig.hood_color, np.float32) * shade, render)
        label = np.where(hood, IGNORE, label).astype(np.uint8)
    if rig.border > 0:
        edge = border_mask(h, w, rig.border)
        render = np.where(edge[..., None], 0.0, render).astype(np.float32)
        label = np.where(edge, IGNORE, label).astype(np.uint8)
    return render, label
