"""The two SynthCity domains: how the simulator-like source and the camera-like target differ.

They differ along several axes at once, as GTA5 and Cityscapes do: camera (height, focal length,
horizon), object scale, class frequencies, surface colours, illumination and shadows, texture,
blur and sensor noise. Each axis is a field here, so a study can switch one off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Train ids, for readability of the tables below.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Camera:
    height_m: tuple[float, float]  # camera height above the road, sampled per image
    focal: tuple[float, float]  # focal length as a fraction of the image width
    horizon: tuple[float, float]  # horizon row as a fraction of the image height


@dataclass(frozen=True)
class Photometric:
    brightness: tuple[float, float]  # sun intensity
    saturation: float  # 1 keeps colours, < 1 washes them out
    channel_gain: tuple[float, float, float]  # white balance (colour cast)
    gamma: float
    contrast: float
    texture: float  # amplitude of surface grain (fraction of the colour)
    shadows: tuple[int, int]  # number of cast shadows on the ground, sampled
    blur_sigma: tuple[float, float]  # Gaussian blur in pixels (0 = sharp render)
    noise_sigma: tuple[float, float]  # sensor noise, grey levels
    vignette: float  # darkening of the corners
    jpeg_quality: tuple[int, int] | None = None  # JPEG-like compression, sampled (None = lossless)


@dataclass(frozen=True)
class Texture:
    """A surface pattern of one class, multiplied into its colour (screen space, random phase)."""
    family: str  # one of textures.FAMILIES: grain, stripes, checker, blotches
    amplitude: float  # fraction of the colour
    period: float = 6.0  # pixels (cell size for grain and blotches)
    angle: float = 0.0  # degrees, for stripes


@dataclass(frozen=True)
class Rig:
    """How the camera is mounted: what of the car and the lens shows in the frame (void labels)."""
    hood: tuple[float, float] = (0.0, 0.0)  # ego-vehicle hood height, fraction of the image
    hood_color: RGB = (40, 42, 48)
    border: float = 0.0  # rectification border, fraction of each side (curved inner edge)
    roll_deg: float = 0.0  # camera roll, sampled in +-roll_deg


@dataclass(frozen=True)
class DomainStyle:
    name: str
    camera: Camera
    object_scale: float  # multiplies the size of every object
    # Mean number of each object per image (Poisson), which sets the class frequencies.
    counts: dict[str, float]
    building_prob: float  # chance that a roadside block is a building (else wall/fence/trees/open)
    colors: dict[int, tuple[RGB, ...]]  # per class: base colours an instance draws from
    photometric: Photometric
    lane_marking: RGB = (235, 235, 235)
    extra: dict[str, float] = field(default_factory=dict)
    # Per-class surface patterns on top of the grain (empty: grain only, the standard look).
    textures: dict[int, Texture] = field(default_factory=dict)
    rig: Rig | None = None  # None: a bare camera, every pixel labelled


SOURCE = DomainStyle(
    name="source",
    camera=Camera(height_m=(1.1, 1.5), focal=(0.55, 0.70), horizon=(0.40, 0.48)),
    object_scale=1.15,
    counts={
        "car": 5.0, "truck": 1.0, "bus": 0.6, "train": 0.25, "person": 2.5, "motorcycle": 0.7,
        "bicycle": 0.6, "pole": 3.0, "light": 0.9, "sign": 1.2, "tree": 2.0,
    },
    building_prob=0.62,
    colors={
        ROAD: ((92, 88, 96), (70, 70, 78), (105, 98, 95)),
        SIDEWALK: ((178, 160, 170), (190, 180, 150), (160, 150, 160)),
        BUILDING: ((170, 120, 90), (150, 150, 160), (200, 180, 140), (120, 90, 80), (110, 120, 140)),
        WALL: ((185, 175, 150), (140, 130, 120), (160, 110, 100)),
        FENCE: ((150, 110, 70), (120, 120, 125), (90, 140, 90)),
        POLE: ((120, 120, 120), (90, 95, 100)),
        LIGHT: ((40, 45, 40), (200, 170, 40)),
        SIGN: ((230, 210, 40), (40, 80, 200), (210, 40, 40)),
        VEGETATION: ((60, 150, 40), (40, 120, 50), (90, 160, 50)),
        TERRAIN: ((120, 190, 80), (150, 170, 90), (140, 120, 80)),
        SKY: ((100, 160, 240), (130, 185, 250), (90, 140, 220)),
        PERSON: ((200, 40, 40), (40, 60, 200), (230, 200, 60), (50, 50, 50), (240, 240, 240)),
        RIDER: ((240, 120, 20), (30, 160, 160), (200, 40, 160)),
        CAR: ((30, 60, 200), (200, 30, 30), (220, 220, 225), (25, 25, 30), (160, 165, 170)),
        TRUCK: ((235, 235, 230), (210, 140, 40), (70, 100, 60)),
        BUS: ((240, 190, 30), (200, 40, 40), (40, 120, 200)),
        TRAIN: ((220, 40, 60), (245, 245, 245), (40, 160, 120)),
        MOTORCYCLE: ((20, 20, 20), (230, 110, 20), (150, 20, 20)),
        BICYCLE: ((180, 30, 40), (30, 30, 30), (30, 140, 220)),
    },
    photometric=Photometric(
        brightness=(0.95, 1.15), saturation=1.1, channel_gain=(1.0, 1.0, 1.0), gamma=1.0,
        contrast=1.05, texture=0.03, shadows=(0, 1), blur_sigma=(0.0, 0.0),
        noise_sigma=(0.0, 1.0), vignette=0.0,
    ),
)

TARGET = DomainStyle(
    name="target",
    camera=Camera(height_m=(1.6, 2.1), focal=(0.45, 0.55), horizon=(0.34, 0.42)),
    object_scale=0.9,
    counts={
        "car": 3.5, "truck": 0.5, "bus": 0.4, "train": 0.2, "person": 4.0, "motorcycle": 0.5,
        "bicycle": 1.4, "pole": 4.0, "light": 1.2, "sign": 1.5, "tree": 3.0,
    },
    building_prob=0.55,
    colors={
        ROAD: ((105, 105, 110), (120, 115, 110), (90, 92, 98)),
        SIDEWALK: ((150, 145, 140), (170, 160, 150), (135, 135, 140)),
        BUILDING: ((150, 130, 110), (140, 140, 135), (175, 165, 150), (110, 100, 95), (160, 120, 100)),
        WALL: ((160, 155, 140), (130, 125, 120), (150, 125, 105)),
        FENCE: ((130, 115, 95), (110, 110, 110), (95, 120, 95)),
        POLE: ((105, 105, 100), (80, 85, 80)),
        LIGHT: ((35, 35, 30), (150, 130, 60)),
        SIGN: ((200, 190, 90), (60, 90, 170), (180, 70, 60)),
        VEGETATION: ((70, 135, 45), (60, 115, 50), (95, 140, 50)),
        TERRAIN: ((125, 170, 85), (150, 160, 95), (135, 125, 85)),
        SKY: ((110, 160, 232), (140, 175, 228), (100, 150, 222)),
        PERSON: ((90, 60, 60), (60, 70, 110), (160, 150, 120), (40, 40, 45), (190, 185, 180)),
        RIDER: ((170, 100, 60), (60, 120, 120), (140, 70, 110)),
        CAR: ((60, 70, 120), (140, 60, 55), (185, 185, 185), (35, 35, 38), (130, 130, 135)),
        TRUCK: ((200, 200, 195), (170, 130, 70), (80, 95, 75)),
        BUS: ((200, 170, 70), (160, 70, 60), (70, 110, 160)),
        TRAIN: ((170, 70, 75), (210, 210, 205), (70, 140, 115)),
        MOTORCYCLE: ((30, 30, 30), (170, 100, 50), (110, 40, 40)),
        BICYCLE: ((140, 50, 55), (40, 40, 40), (60, 120, 170)),
    },
    photometric=Photometric(
        brightness=(0.85, 1.05), saturation=0.9, channel_gain=(1.04, 1.0, 0.92), gamma=1.05,
        contrast=0.9, texture=0.08, shadows=(0, 3), blur_sigma=(0.4, 0.8),
        noise_sigma=(2.0, 5.0), vignette=0.15,
    ),
)

DOMAINS = {"source": SOURCE, "target": TARGET}
