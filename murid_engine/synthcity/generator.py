"""Writes a SynthCity benchmark to disk in the real layouts: the source in the GTA5 layout
(palette label PNGs of Cityscapes label ids), the target in the Cityscapes layout."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes, write_grey_png, write_palette_png, write_rgb
from murid_engine.labels import IGNORE, LABELS, TRAIN_ID_TO_LABEL_ID
from murid_engine.progress import progress

from .photometric import apply_camera
from .rig import apply_rig
from .scene import render_scene
from .shifts import get_shift
from .textures import apply_textures

# Target cities: two for training, one held out for validation, as Cityscapes splits by city.
TRAIN_CITIES = ("northgate", "riverside")
VAL_CITIES = ("eastfield",)
_SPLIT_CODE = {"source": 0, "train": 1, "val": 2}
_LABEL_ID_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _l in LABELS:
    _LABEL_ID_COLORS[_l.id] = _l.color


@dataclass(frozen=True)
class SynthConfig:
    n_source: int = 600
    n_target: int = 400
    n_val: int = 100
    width: int = 256
    height: int = 128
    seed: int = 0
    shift: str = "standard"  # a name in shifts.SHIFTS

    def validate(self) -> "SynthConfig":
        for name in ("n_source", "n_target", "n_val"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.n_source + self.n_target + self.n_val == 0:
            raise UserError("nothing to generate: all image counts are 0")
        if not (32 <= self.width <= 4096 and 32 <= self.height <= 4096):
            raise UserError(f"size {self.width}x{self.height} is outside 32..4096 pixels per side")
        get_shift(self.shift)
        return self


def render_image(domain: str, split: str, index: int, cfg: SynthConfig):
    """(RGB uint8, train ids uint8) of one image; the same arguments always give the same image.
    Void pixels (a hard target's hood and rectification border) have train id 255."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODE[split], index])
    style = get_shift(cfg.shift).style(domain)
    render, label = render_scene(style, rng, cfg.width, cfg.height)
    # The standard styles have no textures and no rig, so they draw nothing more from rng and
    # render exactly what they did before shifts existed.
    if style.textures:
        render = apply_textures(render, label, style.textures, rng)
    if style.rig is not None:
        render, label = apply_rig(render, label, style.rig, rng)
    return apply_camera(render, label, style.photometric, rng), label


def _jobs(cfg: SynthConfig, out: Path):
    for i in range(cfg.n_source):
        yield ("source", "source", i, out / "source" / "images" / f"{i:05d}.png",
               out / "source" / "labels" / f"{i:05d}.png")
    for split, n, cities in (("train", cfg.n_target, TRAIN_CITIES), ("val", cfg.n_val, VAL_CITIES)):
        for i in range(n):
            city = cities[i % len(cities)]
            stem = f"{city}_{i // len(cities):06d}_000019"
            yield ("target", split, i,
                   out / "target" / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                   out / "target" / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def _write_one(job_and_cfg) -> None:
    (domain, split, index, image_path, label_path), cfg = job_and_cfg
    rgb, train_ids = render_image(domain, split, index, cfg)
    label_ids = TRAIN_ID_TO_LABEL_ID[train_ids]
    label_ids[train_ids == IGNORE] = 0  # "unlabeled" (hood, rectification border)
    write_rgb(image_path, rgb)
    if domain == "source":  # GTA5 stores label ids as the indices of a palette PNG
        write_palette_png(label_path, label_ids, _LABEL_ID_COLORS)
    else:
        write_grey_png(label_path, label_ids)


# What `generate` writes: removed before an earlier SynthCity folder is written again, so that no
# image of a larger earlier run stays beside a manifest that no longer counts it.
GENERATED = ("synthcity.json", "source/images", "source/labels", "target/leftImg8bit", "target/gtFine")


def remove_generated(out: Path) -> None:
    for name in GENERATED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _discard_partial(out: Path, created: bool) -> None:
    """What a stopped or failed run wrote, so the folder can be generated into again."""
    remove_generated(out)
    for name in ("source", "target", ""):
        folder = out / name
        if folder.is_dir() and not any(folder.iterdir()) and (name or created):
            folder.rmdir()


def generate(out: Path, cfg: SynthConfig, workers: int | None = None, overwrite: bool = True,
             on_image: Callable[[int, int], None] | None = None) -> dict:
    """Write the benchmark into `out` (created if needed); returns the metadata written.
    An earlier SynthCity folder is cleared of its generated files first, or, with
    overwrite=False, refused (as `murid synth` does without --overwrite).

    `on_image(done, total)` follows every image written (progress); when it raises (a cancel),
    the worker processes are ended, what this run wrote is removed and the exception goes on.
    """
    cfg.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    created = not out.exists()
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synthcity.json").exists():
            raise UserError(f"{out} is not empty and is not a SynthCity folder; choose a new folder")
        if not overwrite:
            raise UserError(f"{out} already holds a SynthCity benchmark; choose a new folder or "
                            f"pass --overwrite to replace it")
        remove_generated(out)
    jobs = [(job, cfg) for job in _jobs(cfg, out)]
    workers = workers or min(len(jobs), os.cpu_count() or 1, 8)
    try:
        if workers > 1:
            # Leaving the pool's block terminates its workers: a cancel does not wait for them.
            with get_context("spawn").Pool(workers) as pool:
                # chunksize 1: a result (and the progress) comes back per image, not per 8.
                for done, _ in enumerate(progress(pool.imap_unordered(_write_one, jobs), "synth",
                                                  len(jobs)), start=1):
                    if on_image is not None:
                        on_image(done, len(jobs))
        else:
            for done, job in enumerate(progress(jobs, "synth"), start=1):
                _write_one(job)
                if on_image is not None:
                    on_image(done, len(jobs))
    except BaseException:
        _discard_partial(out, created)
        raise
    meta = {"generator": "synthcity", "version": 1, **asdict(cfg),
            "shift_summary": get_shift(cfg.shift).summary,
            "source": "source (gta5 layout)", "target": "target (cityscapes layout)",
            "train_cities": list(TRAIN_CITIES), "val_cities": list(VAL_CITIES)}
    atomic_write_bytes(out / "synthcity.json", (json.dumps(meta, indent=2) + "\n").encode())
    return meta
