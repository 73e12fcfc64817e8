"""A SynthCity shift: the pair of domain styles a benchmark is rendered with.

`standard` is the original benchmark (domains.py): mostly a difference of look that per-channel
feature statistics largely absorb (re-estimating BatchNorm on the target, AdaBN, closes most of
its gap). `hard` (hard.py) adds what they cannot absorb, as GTA5 -> Cityscapes has: per-class
colours and textures that change between the domains, another camera rig with a hood and a
rectification border, other object densities and sensor effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from murid_engine.errors import UserError

from .domains import SOURCE, TARGET, DomainStyle
from .hard import HARD_SOURCE, HARD_TARGET


@dataclass(frozen=True)
class Shift:
    name: str
    source: DomainStyle
    target: DomainStyle
    summary: str

    def style(self, domain: str) -> DomainStyle:
        return {"source": self.source, "target": self.target}[domain]


SHIFTS: dict[str, Shift] = {
    "standard": Shift("standard", SOURCE, TARGET,
                      "camera, object scale and frequencies, colours, light, grain, blur, noise"),
    "hard": Shift("hard", HARD_SOURCE, HARD_TARGET,
                  "standard axes plus per-class colour and texture changes, hood and "
                  "rectification border (void), camera roll, other densities, JPEG"),
}


def get_shift(name: str) -> Shift:
    try:
        return SHIFTS[name]
    except KeyError:
        raise UserError(f"unknown SynthCity shift '{name}' (shifts: {', '.join(SHIFTS)})") from None
