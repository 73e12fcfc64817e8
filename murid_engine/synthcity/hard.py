"""The `hard` SynthCity shift: a domain gap that per-channel statistics cannot remove.

What makes GTA5 -> Cityscapes hard beyond a colour cast, each a field of the styles below:
- per-class appearance: every target class takes other colours (its source colours hue-rotated
  and pulled towards another class's source colours) and another texture family, so a class's
  look changes differently from its neighbours' and no per-channel affine map undoes it;
- geometry: a higher, wider, rolled camera, an ego-vehicle hood and a rectification border that
  are void (255) in the target labels;
- object density and scale: fewer cars, many more people, bicycles and poles in the target;
- sensor: blur, noise and JPEG compression in the target, a clean render in the source.
Global brightness, saturation and white balance are kept close on purpose: that part of a gap
is the one BatchNorm re-estimation (AdaBN, Li et al. 2016) already removes.
"""

from __future__ import annotations

import colorsys
from dataclasses import replace

import numpy as np

from .domains import (BICYCLE, BUILDING, BUS, CAR, FENCE, LIGHT, MOTORCYCLE, PERSON, POLE, RIDER,
                      ROAD, SIDEWALK, SIGN, SKY, SOURCE, TERRAIN, TRAIN, TRUCK, VEGETATION, WALL,
                      Camera, Photometric, Rig, Texture)

STUFF = (ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY)
THINGS = (PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE)
# How far a target class's colours move: hue rotation (degrees) and the pull (0..1) towards the
# source colours of a partner class three places on in its group (stuff to stuff, things to
# things), so classes swap looks rather than all drifting one way.
HUE_DEGREES = 20.0
PULL = 0.10


def _hue_rotate(rgb, degrees: float):
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + degrees / 360.0) % 1.0, s, v)
    return (r * 255.0, g * 255.0, b * 255.0)


def recolor(colors: dict, hue_degrees: float, pull: float) -> dict:
    """Target colours from source colours: per class a hue turn (alternating direction) and a
    pull towards the mean source colour of its partner class."""
    out = {}
    for group in (STUFF, THINGS):
        for i, cls in enumerate(group):
            partner = np.mean(np.array(colors[group[(i + 3) % len(group)]], np.float64), axis=0)
            turn = hue_degrees if i % 2 == 0 else -hue_degrees
            out[cls] = tuple(
                tuple(int(round(c)) for c in (1 - pull) * np.array(_hue_rotate(rgb, turn)) + pull * partner)
                for rgb in colors[cls])
    return out


HARD_SOURCE = replace(
    SOURCE,
    name="source",
    camera=Camera(height_m=(1.0, 1.4), focal=(0.60, 0.75), horizon=(0.42, 0.50)),
    object_scale=1.2,
    counts={
        "car": 6.0, "truck": 1.2, "bus": 0.8, "train": 0.3, "person": 1.5, "motorcycle": 0.8,
        "bicycle": 0.5, "pole": 2.0, "light": 0.8, "sign": 1.0, "tree": 1.5,
    },
    building_prob=0.70,
    textures={
        ROAD: Texture("grain", 0.10, 2.0),
        SIDEWALK: Texture("checker", 0.12, 5.0),
        BUILDING: Texture("stripes", 0.12, 4.0, 90.0),
        WALL: Texture("blotches", 0.10, 6.0),
        VEGETATION: Texture("grain", 0.25, 2.0),
        TERRAIN: Texture("blotches", 0.15, 4.0),
    },
)

HARD_TARGET = replace(
    SOURCE,
    name="target",
    camera=Camera(height_m=(1.9, 2.5), focal=(0.38, 0.48), horizon=(0.30, 0.38)),
    object_scale=0.85,
    counts={
        "car": 2.5, "truck": 0.4, "bus": 0.35, "train": 0.25, "person": 5.0, "motorcycle": 0.5,
        "bicycle": 1.8, "pole": 5.0, "light": 1.5, "sign": 2.0, "tree": 3.5,
    },
    building_prob=0.45,
    colors=recolor(SOURCE.colors, HUE_DEGREES, PULL),
    photometric=Photometric(
        brightness=(0.9, 1.1), saturation=1.0, channel_gain=(1.0, 1.0, 1.0), gamma=1.0,
        contrast=1.0, texture=0.05, shadows=(0, 2), blur_sigma=(0.5, 1.0),
        noise_sigma=(2.0, 5.0), vignette=0.05, jpeg_quality=(30, 60),
    ),
    textures={
        ROAD: Texture("blotches", 0.15, 8.0),
        SIDEWALK: Texture("stripes", 0.12, 6.0, 30.0),
        BUILDING: Texture("checker", 0.15, 3.0),
        WALL: Texture("stripes", 0.12, 3.0, 0.0),
        VEGETATION: Texture("blotches", 0.25, 3.0),
        TERRAIN: Texture("grain", 0.25, 2.0),
        SKY: Texture("grain", 0.05, 10.0),
        CAR: Texture("stripes", 0.10, 3.0, 90.0),
        TRUCK: Texture("stripes", 0.10, 3.0, 90.0),
        BUS: Texture("stripes", 0.10, 3.0, 90.0),
        PERSON: Texture("checker", 0.15, 2.0),
        RIDER: Texture("checker", 0.15, 2.0),
    },
    rig=Rig(hood=(0.08, 0.14), border=0.03, roll_deg=3.0),
)
