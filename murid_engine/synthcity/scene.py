"""One SynthCity street scene: a road in perspective, roadside blocks, a skyline and objects.

`render_scene` returns the clean render (float RGB, before the domain's camera effects) and the
label map in train ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import objects
from .domains import (BICYCLE, BUILDING, BUS, CAR, FENCE, LIGHT, MOTORCYCLE, PERSON, POLE,
                      RIDER, ROAD, SIDEWALK, SIGN, SKY, TERRAIN, TRAIN, TRUCK, VEGETATION, WALL,
                      DomainStyle)
from .painter import Painter, PinholeCamera, Sprite

Z_NEAR, Z_FAR, Z_SKYLINE = 2.5, 70.0, 95.0


@dataclass(frozen=True)
class Road:
    half_width: float
    sidewalk: float
    verge: tuple[float, float]  # width of the strip between sidewalk and blocks, left and right
    verge_is_grass: tuple[bool, bool]
    curve: float
    shift: float

    def center(self, z):
        return self.shift + self.curve * np.asarray(z) ** 2


def _pick(rng: np.random.Generator, colors) -> tuple[float, float, float]:
    base = np.array(colors[rng.integers(len(colors))], dtype=np.float32)
    return tuple(np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, 6, 3), 0, 255))


def _sample_camera(style: DomainStyle, rng, width: int, height: int) -> PinholeCamera:
    cam = style.camera
    return PinholeCamera(
        focal_px=rng.uniform(*cam.focal) * width,
        cx=width / 2 + rng.normal(0.0, 0.03 * width),
        horizon=rng.uniform(*cam.horizon) * height,
        height_m=rng.uniform(*cam.height_m),
    )


def _sample_road(rng) -> Road:
    return Road(
        half_width=rng.uniform(3.0, 6.5),
        sidewalk=rng.uniform(1.5, 3.5),
        verge=(rng.uniform(0.0, 4.0), rng.uniform(0.0, 4.0)),
        verge_is_grass=(bool(rng.random() < 0.55), bool(rng.random() < 0.55)),
        curve=rng.normal(0.0, 0.0025),
        shift=rng.normal(0.0, 1.0),
    )


def _sky_and_ground(p: Painter, cam: PinholeCamera, road: Road, style: DomainStyle, rng) -> None:
    h, w = p.label.shape
    rows = np.arange(h, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(w, dtype=np.float64)[None, :] + 0.5
    sky = np.array(_pick(rng, style.colors[SKY]), dtype=np.float32)
    fade = np.clip(rows / max(cam.horizon, 1.0), 0, 1)[..., None].astype(np.float32)
    p.color[:] = sky * (0.8 + 0.35 * fade)  # lighter towards the horizon

    below = np.broadcast_to(rows > cam.horizon + 0.5, (h, w))
    z = cam.ground_depth(np.broadcast_to(rows, (h, w)))
    x = (cols - cam.cx) * z / cam.focal_px - road.center(z)
    ground = below & (z < Z_SKYLINE)
    ax = np.abs(x)
    right = x > 0
    grass = np.where(right, road.verge_is_grass[1], road.verge_is_grass[0])
    cls = np.where(ax < road.half_width, ROAD,
                   np.where(ax < road.half_width + road.sidewalk, SIDEWALK,
                            np.where(grass, TERRAIN, SIDEWALK)))
    colors = {c: np.array(_pick(rng, style.colors[c]), dtype=np.float32)
              for c in (ROAD, SIDEWALK, TERRAIN)}
    verge_walk = np.array(_pick(rng, style.colors[SIDEWALK]), dtype=np.float32)
    for c, rgb in colors.items():
        m = ground & (cls == c)
        p.label[m] = c
        p.color[m] = rgb
    outer = ground & (cls == SIDEWALK) & (ax >= road.half_width + road.sidewalk)
    p.color[outer] = verge_walk
    kerb = ground & (np.abs(ax - road.half_width) < 0.15)
    p.color[kerb] = np.array(colors[SIDEWALK]) * 0.8
    dashes = ground & (np.abs(x) < 0.1) & ((z % 6.0) < 3.0)
    p.color[dashes] = style.lane_marking


def _skyline(p: Painter, cam: PinholeCamera, style: DomainStyle, rng) -> None:
    x = -70.0
    while x < 70.0:
        width = rng.uniform(6.0, 18.0)
        if rng.random() < 0.75:
            top = rng.uniform(8.0, 35.0)
            u0, v0 = cam.project(x, 0.0, Z_SKYLINE)
            u1, v1 = cam.project(x + width, top, Z_SKYLINE)
            p.polygon(np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]), BUILDING,
                      _pick(rng, style.colors[BUILDING]))
        else:
            s = Sprite(p, cam, x + width / 2, Z_SKYLINE)
            s.ellipse(0.0, 5.0, width / 2, 6.0, VEGETATION, _pick(rng, style.colors[VEGETATION]))
        x += width


def _facade(p: Painter, cam: PinholeCamera, road: Road, side: int, offset: float, z0: float,
            z1: float, top: float, cls: int, rgb, windows: bool, rng) -> None:
    zs = np.linspace(z0, z1, 6)
    xs = road.center(zs) + side * offset
    ub, vb = cam.project(xs, 0.0, zs)
    ut, vt = cam.project(xs, top, zs)
    p.polygon(np.concatenate([np.stack([ub, vb], 1), np.stack([ut, vt], 1)[::-1]]), cls,
              tuple(c * 0.82 for c in rgb))
    # The face looking at the camera, at the near end of the block.
    xn = road.center(z0) + side * offset
    u0, v0 = cam.project(xn, 0.0, z0)
    u1, v1 = cam.project(xn + side * 12.0, top, z0)
    p.polygon(np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]), cls, rgb)
    if not windows:
        return
    glass = (55, 65, 80) if rng.random() < 0.6 else (190, 200, 210)
    for floor in np.arange(1.5, top - 1.0, 3.0):
        for za in np.arange(z0 + 1.0, z1 - 1.5, 3.0):
            zz = np.array([za, za + 1.4])
            xx = road.center(zz) + side * offset
            ua, va = cam.project(xx, floor, zz)
            ub2, vb2 = cam.project(xx, floor + 1.6, zz)
            p.polygon(np.array([[ua[0], va[0]], [ua[1], va[1]], [ub2[1], vb2[1]], [ub2[0], vb2[0]]]),
                      None, glass)


def _roadside(p: Painter, cam: PinholeCamera, road: Road, style: DomainStyle, rng) -> None:
    for side_index, side in enumerate((-1, 1)):
        offset = road.half_width + road.sidewalk + road.verge[side_index]
        blocks = []
        z = rng.uniform(Z_NEAR, 10.0)
        while z < Z_FAR:
            length = rng.uniform(8.0, 28.0)
            blocks.append((z, min(z + length, Z_FAR)))
            z += length + rng.uniform(0.0, 6.0)
        for z0, z1 in reversed(blocks):  # far to near
            roll = rng.random()
            if roll < style.building_prob:
                _facade(p, cam, road, side, offset, z0, z1, rng.uniform(7.0, 26.0), BUILDING,
                        _pick(rng, style.colors[BUILDING]), True, rng)
            elif roll < style.building_prob + 0.12:
                _facade(p, cam, road, side, offset - 0.3, z0, z1, rng.uniform(1.2, 3.0), WALL,
                        _pick(rng, style.colors[WALL]), False, rng)
            elif roll < style.building_prob + 0.24:
                _fence(p, cam, road, side, offset - 0.3, z0, z1, _pick(rng, style.colors[FENCE]))
            elif roll < style.building_prob + 0.34:
                _facade(p, cam, road, side, offset - 0.5, z0, z1, rng.uniform(1.0, 2.2), VEGETATION,
                        _pick(rng, style.colors[VEGETATION]), False, rng)


def _fence(p: Painter, cam: PinholeCamera, road: Road, side: int, offset: float, z0: float,
           z1: float, rgb) -> None:
    top = 1.6
    _facade(p, cam, road, side, offset, z0, z1, top, FENCE, rgb, False, None)
    dark = tuple(c * 0.55 for c in rgb)
    for zz in np.arange(z0, z1, 0.6):  # slats: the fence's look, one label
        x = road.center(zz) + side * offset
        u0, v0 = cam.project(x, 0.0, zz)
        _, v1 = cam.project(x, top, zz)
        p.line((u0, v0), (u0, v1), 1, None, dark)


def render_scene(style: DomainStyle, rng: np.random.Generator, width: int, height: int):
    """(float32 RGB render before camera effects, uint8 train-id label map)."""
    cam = _sample_camera(style, rng, width, height)
    road = _sample_road(rng)
    p = Painter(width, height, SKY)
    _sky_and_ground(p, cam, road, style, rng)
    _skyline(p, cam, style, rng)
    _roadside(p, cam, road, style, rng)
    for _, draw in sorted(_place_objects(style, road, rng), key=lambda t: -t[0]):
        draw(p, cam)
    return p.color, p.label


def _place_objects(style: DomainStyle, road: Road, rng):
    """(depth, draw function) for every object of the scene."""
    placed = []
    scale = style.object_scale
    colors = style.colors
    counts = {k: rng.poisson(v) for k, v in style.counts.items()}

    def add(z: float, x_rel: float, fn, *args):
        x = float(road.center(z)) + x_rel

        def draw(p: Painter, cam: PinholeCamera):
            fn(Sprite(p, cam, x, z, size=scale), rng, *args)

        placed.append((z, draw))

    hw, sw = road.half_width, road.sidewalk

    def kerbside(side: int) -> float:
        return side * (hw + rng.uniform(0.2, 0.6))

    def on_sidewalk(side: int) -> float:
        return side * (hw + rng.uniform(0.4, max(0.5, sw - 0.3)))

    def depth(lo: float = 4.0, hi: float = 55.0) -> float:
        # Biased towards the camera, as street photos are: more near, large objects.
        return float(lo + (hi - lo) * rng.random() ** 1.6)

    def sides() -> int:
        return int(rng.choice((-1, 1)))

    for _ in range(counts["car"]):
        lane = rng.uniform(-hw + 1.0, hw - 1.0) if rng.random() < 0.6 else sides() * (hw - 1.1)
        add(depth(), lane, objects.car, _pick(rng, colors[CAR]))
    for _ in range(counts["truck"]):
        add(depth(8.0, 60.0), rng.uniform(-hw + 1.3, hw - 1.3), objects.truck, _pick(rng, colors[TRUCK]))
    for _ in range(counts["bus"]):
        add(depth(8.0, 60.0), rng.uniform(-hw + 1.3, hw - 1.3), objects.bus, _pick(rng, colors[BUS]))
    for _ in range(counts["train"]):
        add(depth(10.0, 60.0), rng.normal(0.0, 0.3), objects.train, _pick(rng, colors[TRAIN]))
    for _ in range(counts["motorcycle"]):
        add(depth(), rng.uniform(-hw + 0.5, hw - 0.5), objects.motorcycle,
            _pick(rng, colors[MOTORCYCLE]), _pick(rng, colors[RIDER]))
    for _ in range(counts["bicycle"]):
        ridden = rng.random() < 0.6
        x = sides() * (hw - 0.6) if ridden else on_sidewalk(sides())
        add(depth(4.0, 40.0), x, objects.bicycle, _pick(rng, colors[BICYCLE]),
            _pick(rng, colors[RIDER]) if ridden else None)
    for _ in range(counts["person"]):
        add(depth(3.5, 45.0), on_sidewalk(sides()), objects.person, _pick(rng, colors[PERSON]))
    for _ in range(counts["pole"]):
        add(depth(3.0, 60.0), kerbside(sides()), objects.pole, _pick(rng, colors[POLE]),
            rng.uniform(4.0, 8.0))
    for _ in range(counts["light"]):
        z, x, h = depth(5.0, 60.0), kerbside(sides()), rng.uniform(3.5, 5.0)
        add(z, x, objects.pole, _pick(rng, colors[POLE]), h)
        add(z - 0.01, x, objects.traffic_light, _pick(rng, colors[LIGHT]), h + 0.9)
    for _ in range(counts["sign"]):
        z, x, h = depth(4.0, 50.0), kerbside(sides()), rng.uniform(2.2, 3.0)
        add(z, x, objects.pole, _pick(rng, colors[POLE]), h)
        add(z - 0.01, x, objects.traffic_sign, _pick(rng, colors[SIGN]), h)
    for _ in range(counts["tree"]):
        side = sides()
        add(depth(4.0, 60.0), side * (hw + sw + rng.uniform(0.3, 1.5)), objects.tree,
            _pick(rng, colors[VEGETATION]))
    return placed
