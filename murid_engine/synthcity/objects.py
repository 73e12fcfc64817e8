"""The street objects of SynthCity, each drawn as a few shapes in metres around its ground point.

Colour-only details (windows, lamps, lights) give texture without changing the label, as in a
real scene where a car's windows are still car.
"""

from __future__ import annotations

import numpy as np

from .domains import (BICYCLE, BUS, CAR, LIGHT, MOTORCYCLE, PERSON, POLE, RIDER, SIGN, TRAIN,
                      TRUCK, VEGETATION)
from .painter import Sprite

DARK = (25, 25, 30)
GLASS = (45, 55, 70)
SKIN = (205, 160, 130)


def _shade(rgb, factor: float):
    return tuple(min(255.0, c * factor) for c in rgb)


def person(s: Sprite, rng: np.random.Generator, cloth, cls: int = PERSON, seat: float = 0.0,
           height: float = 1.75) -> None:
    """A pedestrian (or, with cls=RIDER and a seat height, a rider sitting on a vehicle)."""
    h = height * rng.uniform(0.9, 1.08)
    legs = rng.choice([(40, 40, 50), (70, 60, 50), (30, 40, 80)])
    if seat == 0.0:
        stride = rng.uniform(0.0, 0.18)
        s.rect(-0.17 - stride / 2, -0.03, 0.0, 0.47 * h, cls, legs)
        s.rect(0.03, 0.17 + stride / 2, 0.0, 0.47 * h, cls, legs)
        base = 0.47 * h
    else:
        s.rect(-0.2, 0.2, seat - 0.25, seat + 0.05, cls, legs)
        base = seat
    torso = 0.36 * h if seat == 0.0 else 0.55
    s.rect(-0.22, 0.22, base, base + torso, cls, cloth)
    s.rect(-0.28, -0.2, base + 0.05, base + torso - 0.02, cls, _shade(cloth, 0.85))  # arms
    s.rect(0.2, 0.28, base + 0.05, base + torso - 0.02, cls, _shade(cloth, 0.85))
    head_r = 0.11 * h
    s.ellipse(0.0, base + torso + head_r * 0.9, head_r * 0.85, head_r, cls, SKIN)
    if rng.random() < 0.4:  # hair or helmet
        s.ellipse(0.0, base + torso + head_r * 1.35, head_r * 0.85, head_r * 0.5, cls, DARK)


def car(s: Sprite, rng: np.random.Generator, body) -> None:
    """Seen from behind, as in traffic ahead of the camera."""
    w = rng.uniform(1.65, 1.95)
    s.rect(-w / 2, w / 2, 0.25, 0.95, CAR, body)
    s.poly([(-0.42 * w, 0.95), (0.42 * w, 0.95), (0.34 * w, 1.45), (-0.34 * w, 1.45)], CAR,
           _shade(body, 0.9))
    s.poly([(-0.36 * w, 1.0), (0.36 * w, 1.0), (0.3 * w, 1.38), (-0.3 * w, 1.38)], None, GLASS)
    for side in (-1, 1):
        s.rect(side * w / 2 - 0.3 * (side > 0), side * w / 2 + 0.3 * (side < 0), 0.0, 0.38, CAR, DARK)
        s.rect(side * 0.42 * w - 0.1, side * 0.42 * w + 0.1, 0.7, 0.82, None, (200, 30, 30))
    s.rect(-0.2, 0.2, 0.45, 0.6, None, (225, 225, 210))  # number plate


def truck(s: Sprite, rng: np.random.Generator, body) -> None:
    w = rng.uniform(2.3, 2.5)
    top = rng.uniform(3.0, 3.8)
    for side in (-1, 1):
        s.rect(side * 0.9 - 0.25, side * 0.9 + 0.25, 0.0, 0.6, TRUCK, DARK)
    s.rect(-w / 2, w / 2, 0.55, top, TRUCK, body)
    s.rect(-0.04, 0.04, 0.7, top - 0.15, None, _shade(body, 0.6))  # rear door seam
    s.rect(-w / 2, w / 2, 0.55, 0.75, None, (60, 60, 60))  # bumper


def bus(s: Sprite, rng: np.random.Generator, body) -> None:
    w = rng.uniform(2.45, 2.6)
    s.rect(-w / 2, w / 2, 0.3, 3.1, BUS, body)
    s.rect(-0.45 * w, 0.45 * w, 1.5, 2.6, None, GLASS)
    s.rect(-0.3 * w, 0.3 * w, 2.7, 2.95, None, (240, 150, 30))  # destination display
    for side in (-1, 1):
        s.rect(side * 0.95 - 0.22, side * 0.95 + 0.22, 0.0, 0.45, BUS, DARK)


def train(s: Sprite, rng: np.random.Generator, body) -> None:
    """A tram in the middle of the road, with its pantograph."""
    w = rng.uniform(2.4, 2.65)
    s.rect(-w / 2, w / 2, 0.35, 3.5, TRAIN, body)
    s.poly([(-0.42 * w, 1.7), (0.42 * w, 1.7), (0.36 * w, 3.1), (-0.36 * w, 3.1)], None, GLASS)
    s.rect(-w / 2, w / 2, 0.35, 0.7, None, _shade(body, 0.55))
    s.line((-0.5, 3.5), (0.0, 4.3), 0.08, TRAIN, DARK)
    s.line((0.5, 3.5), (0.0, 4.3), 0.08, TRAIN, DARK)
    s.rect(-0.6, 0.6, 4.25, 4.35, TRAIN, DARK)


def motorcycle(s: Sprite, rng: np.random.Generator, body, rider_cloth) -> None:
    """Seen from behind with its rider."""
    s.rect(-0.07, 0.07, 0.0, 0.6, MOTORCYCLE, DARK)  # rear wheel
    s.rect(-0.3, 0.3, 0.45, 0.85, MOTORCYCLE, body)
    s.rect(-0.4, 0.4, 0.85, 0.95, MOTORCYCLE, _shade(body, 0.7))  # handlebar
    person(s, rng, rider_cloth, cls=RIDER, seat=0.95, height=1.7)
    s.rect(-0.08, 0.08, 0.55, 0.68, None, (210, 30, 30))  # tail light


def bicycle(s: Sprite, rng: np.random.Generator, frame, rider_cloth) -> None:
    """Side view; with a rider when rider_cloth is given."""
    r, half = 0.34, 0.55
    width = 0.06
    for cx in (-half, half):
        s.ring(cx, r, r, width, BICYCLE, DARK)
    for a, b in (((-half, r), (0.0, r)), ((0.0, r), (half - 0.1, r + 0.45)),
                 ((-half + 0.15, r + 0.45), (half - 0.1, r + 0.45)), ((0.0, r), (-half + 0.15, r + 0.45)),
                 ((half, r), (half - 0.1, r + 0.55))):
        s.line(a, b, width, BICYCLE, frame)
    if rider_cloth is not None:
        person(s, rng, rider_cloth, cls=RIDER, seat=r + 0.6, height=1.7)


def pole(s: Sprite, rng: np.random.Generator, color, height: float) -> None:
    s.rect(-0.08, 0.08, 0.0, height, POLE, color)


def traffic_light(s: Sprite, rng: np.random.Generator, housing, height: float) -> None:
    s.rect(-0.2, 0.2, height - 1.0, height, LIGHT, housing)
    lit = rng.integers(0, 3)
    for i, lamp in enumerate(((230, 40, 30), (240, 190, 30), (40, 220, 90))):
        y = height - 0.2 - 0.3 * i
        s.ellipse(0.0, y, 0.11, 0.11, None, lamp if i == lit else _shade(lamp, 0.3))


def traffic_sign(s: Sprite, rng: np.random.Generator, face, y: float) -> None:
    r = rng.uniform(0.3, 0.42)
    shape = rng.integers(0, 3)
    if shape == 0:
        s.ellipse(0.0, y, r, r, SIGN, face)
        s.ellipse(0.0, y, r * 0.6, r * 0.6, None, (240, 240, 240))
    elif shape == 1:
        s.poly([(-r, y - 0.8 * r), (r, y - 0.8 * r), (0.0, y + r)], SIGN, face)
    else:
        s.rect(-r, r, y - 0.7 * r, y + 0.7 * r, SIGN, face)
        s.rect(-0.6 * r, 0.6 * r, y - 0.1 * r, y + 0.1 * r, None, (245, 245, 245))


def tree(s: Sprite, rng: np.random.Generator, leaves) -> None:
    trunk = rng.uniform(1.8, 3.0)
    s.rect(-0.14, 0.14, 0.0, trunk + 0.5, VEGETATION, (90, 65, 45))
    radius = rng.uniform(1.3, 2.6)
    for _ in range(4):
        dx, dy = rng.normal(0.0, radius * 0.35, size=2)
        shade = rng.uniform(0.75, 1.15)
        s.ellipse(dx, trunk + radius + dy, radius * rng.uniform(0.6, 0.9), radius * rng.uniform(0.6, 0.9),
                  VEGETATION, _shade(leaves, shade))
