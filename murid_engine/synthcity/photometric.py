"""The camera side of a domain: surface grain, light and shadows, colour, blur and sensor noise."""

from __future__ import annotations

import cv2
import numpy as np

from .domains import BUILDING, ROAD, SKY, TERRAIN, VEGETATION, Photometric

# How grainy each class's surface is, relative to the domain's texture amplitude.
_GRAIN = np.full(256, 0.5, dtype=np.float32)
_GRAIN[[VEGETATION, TERRAIN]] = 1.6
_GRAIN[ROAD] = 1.0
_GRAIN[BUILDING] = 0.8
_GRAIN[SKY] = 0.15


def _noise_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _shadows(rng, h: int, w: int, horizon: int, count: int) -> np.ndarray:
    light = np.ones((h, w), dtype=np.float32)
    for _ in range(count):
        cx, cy = rng.uniform(0, w), rng.uniform(horizon, h)
        pts = np.stack([cx + rng.normal(0, w * 0.15, 5), cy + rng.normal(0, h * 0.1, 5)], 1)
        hull = cv2.convexHull(pts.astype(np.float32)).astype(np.int32)
        cv2.fillPoly(light, [hull], float(rng.uniform(0.5, 0.72)))
    return cv2.GaussianBlur(light, (0, 0), 1.5)


def apply_camera(render: np.ndarray, label: np.ndarray, look: Photometric,
                 rng: np.random.Generator) -> np.ndarray:
    """Clean float render -> the domain's uint8 RGB photograph."""
    h, w = label.shape
    img = render.astype(np.float32, copy=True)
    grain = 0.6 * _noise_field(rng, h, w, 2) + 0.4 * _noise_field(rng, h, w, 6)
    img *= (1.0 + look.texture * _GRAIN[label] * grain)[..., None]

    img *= rng.uniform(*look.brightness)
    n_shadows = int(rng.integers(look.shadows[0], look.shadows[1] + 1))
    if n_shadows:
        sky_rows = np.where((label == SKY).mean(axis=1) > 0.5)[0]
        horizon = int(sky_rows.max()) + 1 if sky_rows.size else 0
        img *= _shadows(rng, h, w, min(horizon, h - 1), n_shadows)[..., None]

    grey = img.mean(axis=2, keepdims=True)
    img = grey + look.saturation * (img - grey)
    img *= np.array(look.channel_gain, dtype=np.float32)
    img = (img - 128.0) * look.contrast + 128.0
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** look.gamma
    if look.vignette:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img *= (1.0 - look.vignette * r2 / 2.0)[..., None]
    sigma = rng.uniform(*look.blur_sigma)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0.0, rng.uniform(*look.noise_sigma), img.shape).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if look.jpeg_quality is not None:  # block artefacts and chroma loss, as in a dashcam video
        quality = int(rng.integers(look.jpeg_quality[0], look.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
