"""Typed settings of the plain baselines, derived from a MURID run's config so budgets match."""

from __future__ import annotations

import math
from dataclasses import dataclass

from murid_engine.errors import UserError
from murid_engine.run_config import RunConfig

WEIGHTS = ("beta", "uniform")


@dataclass
class MixStyleConfig:
    iterations: int = 1400  # optimiser steps; by default MURID's warm-up + adapt
    points: tuple[int, ...] = (1, 2)  # backbone stages after which source features are re-styled
    probability: float = 0.5  # chance that a source image is re-styled at a point (MixStyle: 0.5)
    weight: str = "beta"  # how the target share of the statistics is drawn: Beta(alpha, alpha) or U(0, 1)
    alpha: float = 0.1  # MixStyle's Beta parameter (Zhou et al., ICLR 2021)

    def validate(self) -> "MixStyleConfig":
        if self.iterations < 1:
            raise UserError(f"mixstyle.iterations must be 1 or more, not {self.iterations}")
        if not self.points or any(p not in (1, 2, 3, 4) for p in self.points):
            raise UserError(f"mixstyle.points must be backbone stages among 1-4, not {list(self.points)}")
        if not 0 <= self.probability <= 1:
            raise UserError(f"mixstyle.probability must be in [0, 1], not {self.probability}")
        if self.weight not in WEIGHTS:
            raise UserError(f"mixstyle.weight must be one of {', '.join(WEIGHTS)}, not '{self.weight}'")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise UserError(f"mixstyle.alpha must be positive, not {self.alpha}")
        return self


@dataclass
class DacsConfig:
    iterations: int = 1200  # optimiser steps; by default as many as MURID's curriculum
    ema_decay: float = 0.99  # the EMA teacher that makes the pseudo-labels (DACS: 0.99)
    confidence: float = 0.968  # DACS's threshold for the pseudo-label weight
    classmix: bool = True
    photometric: bool = True

    def validate(self) -> "DacsConfig":
        if self.iterations < 1:
            raise UserError(f"dacs.iterations must be 1 or more, not {self.iterations}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"dacs.ema_decay must be in [0, 1), not {self.ema_decay}")
        if not 0 < self.confidence < 1:
            raise UserError(f"dacs.confidence must be in (0, 1), not {self.confidence}")
        return self


@dataclass
class BaselineConfig:
    mixstyle: MixStyleConfig
    dacs: DacsConfig

    @classmethod
    def matching(cls, cfg: RunConfig) -> "BaselineConfig":
        """Budgets of `cfg`'s MURID run: mixing for warm-up + adapt, DACS for the curriculum."""
        c = cfg.curriculum
        return cls(MixStyleConfig(iterations=cfg.warmup.iterations + cfg.adapt.iterations),
                   DacsConfig(iterations=c.rounds * c.iterations_per_round, ema_decay=c.ema_decay,
                              classmix=c.classmix, photometric=c.photometric))
