"""Per-class surface patterns: the texture statistics a domain gives each class.

In the hard shift a class wears another pattern family in each domain (tiles in one, stripes in
the other), which per-channel feature statistics cannot undo: the pattern is a spatial property
of the class, not a global shift of a channel's mean or variance.
"""

from __future__ import annotations

import cv2
import numpy as np

from .domains import Texture

FAMILIES = ("grain", "stripes", "checker", "blotches")


def _field(tex: Texture, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A pattern in [-1, 1] over the whole frame, with a random phase."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(tex.period, 1.0)
    if tex.family == "stripes":
        a = np.deg2rad(tex.angle)
        t = (xx * np.cos(a) + yy * np.sin(a)) / period + rng.uniform(0, 1)
        return np.sign(np.sin(2 * np.pi * t)).astype(np.float32)
    if tex.family == "checker":
        ox, oy = rng.uniform(0, period, 2)
        return np.where(((xx + ox) // period + (yy + oy) // period) % 2 == 0, 1.0, -1.0).astype(np.float32)
    cell = int(round(period))
    small = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if tex.family == "blotches":  # patches: repaired asphalt, moss, stains
        return np.where(noise > 0.3, 1.0, -0.3).astype(np.float32)
    if tex.family == "grain":
        return np.clip(noise, -2.0, 2.0) / 2.0
    raise ValueError(f"unknown texture family {tex.family!r} (families: {', '.join(FAMILIES)})")


def apply_textures(render: np.ndarray, label: np.ndarray, textures: dict[int, Texture],
                   rng: np.random.Generator) -> np.ndarray:
    """The render with each listed class's pattern multiplied into its pixels (in place)."""
    h, w = label.shape
    for cls in sorted(textures):
        mask = label == cls
        if not mask.any():
            continue
        tex = textures[cls]
        render[mask] *= (1.0 + tex.amplitude * _field(tex, rng, h, w)[mask])[:, None]
    return render
