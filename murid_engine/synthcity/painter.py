"""A perspective camera and a painter that draws every shape into a label map and a colour image.

Shapes are given in metres in the road's frame (x lateral, y up, z forward) and projected with a
pin-hole camera; drawing far-to-near gives the occlusions. Labels are drawn without
anti-aliasing so each pixel has exactly one class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 2  # sub-pixel precision of cv2 polygons: coordinates are multiplied by 2**_SHIFT


@dataclass(frozen=True)
class PinholeCamera:
    focal_px: float
    cx: float
    horizon: float
    height_m: float

    def project(self, x, y, z):
        """Road-frame metres -> pixel (u, v); z is the distance along the road."""
        u = self.cx + self.focal_px * np.asarray(x, dtype=np.float64) / z
        v = self.horizon + self.focal_px * (self.height_m - np.asarray(y, dtype=np.float64)) / z
        return u, v

    def ground_depth(self, v: np.ndarray) -> np.ndarray:
        """Distance of the ground point seen at row v (rows below the horizon only)."""
        return self.focal_px * self.height_m / np.maximum(v - self.horizon, 1e-3)


class Painter:
    """Draws filled shapes into `label` (train ids) and `color` (float RGB) at once."""

    def __init__(self, width: int, height: int, background_class: int):
        self.width, self.height = width, height
        self.label = np.full((height, width), background_class, dtype=np.uint8)
        self.color = np.zeros((height, width, 3), dtype=np.float32)

    @staticmethod
    def _pts(points: np.ndarray) -> list[np.ndarray]:
        return [np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)]

    def polygon(self, points: np.ndarray, cls: int | None, rgb) -> None:
        """Fill a polygon (N, 2) in pixels; cls None paints colour only (a detail on a surface)."""
        pts = self._pts(points)
        if cls is not None:
            cv2.fillPoly(self.label, pts, int(cls), lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.fillPoly(self.color, pts, tuple(float(c) for c in rgb), lineType=cv2.LINE_8, shift=_SHIFT)

    def ellipse(self, center, axes, cls: int | None, rgb, angle: float = 0.0) -> None:
        c = tuple(int(round(v * (1 << _SHIFT))) for v in center)
        a = tuple(max(1, int(round(v * (1 << _SHIFT)))) for v in axes)
        if cls is not None:
            cv2.ellipse(self.label, c, a, angle, 0, 360, int(cls), -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.color, c, a, angle, 0, 360, tuple(float(v) for v in rgb), -1, cv2.LINE_8, _SHIFT)

    def line(self, p0, p1, thickness: float, cls: int | None, rgb) -> None:
        t = max(1, int(round(thickness)))
        a = tuple(int(round(v * (1 << _SHIFT))) for v in p0)
        b = tuple(int(round(v * (1 << _SHIFT))) for v in p1)
        if cls is not None:
            cv2.line(self.label, a, b, int(cls), t, cv2.LINE_8, _SHIFT)
        cv2.line(self.color, a, b, tuple(float(v) for v in rgb), t, cv2.LINE_8, _SHIFT)

    def ring(self, center, radius: float, thickness: float, cls: int, rgb) -> None:
        c = tuple(int(round(v * (1 << _SHIFT))) for v in center)
        r = max(1, int(round(radius * (1 << _SHIFT))))
        t = max(1, int(round(thickness)))
        cv2.circle(self.label, c, r, int(cls), t, cv2.LINE_8, _SHIFT)
        cv2.circle(self.color, c, r, tuple(float(v) for v in rgb), t, cv2.LINE_8, _SHIFT)


class Sprite:
    """Draws an upright object standing at ground point (x, z), in metres relative to that point."""

    def __init__(self, painter: Painter, camera: PinholeCamera, x: float, z: float,
                 size: float = 1.0):
        self.p, self.z = painter, z
        # Pixels per metre at this distance; `size` scales the object itself (a domain's look).
        self.scale = camera.focal_px / z * size
        self.u0, self.v0 = camera.project(x, 0.0, z)

    def px(self, dx: float, dy: float) -> tuple[float, float]:
        return self.u0 + dx * self.scale, self.v0 - dy * self.scale

    def rect(self, x0, x1, y0, y1, cls, rgb) -> None:
        # At least one pixel wide, so thin objects (poles) never vanish at a distance.
        if (x1 - x0) * self.scale < 1.0:
            mid, half = (x0 + x1) / 2, 0.5 / self.scale
            x0, x1 = mid - half, mid + half
        pts = np.array([self.px(x0, y0), self.px(x1, y0), self.px(x1, y1), self.px(x0, y1)])
        self.p.polygon(pts, cls, rgb)

    def poly(self, points, cls, rgb) -> None:
        self.p.polygon(np.array([self.px(x, y) for x, y in points]), cls, rgb)

    def ellipse(self, cx, cy, rx, ry, cls, rgb) -> None:
        self.p.ellipse(self.px(cx, cy), (rx * self.scale, ry * self.scale), cls, rgb)

    def line(self, a, b, width_m, cls, rgb) -> None:
        self.p.line(self.px(*a), self.px(*b), width_m * self.scale, cls, rgb)

    def ring(self, cx, cy, r, width_m, cls, rgb) -> None:
        self.p.ring(self.px(cx, cy), r * self.scale, width_m * self.scale, cls, rgb)
