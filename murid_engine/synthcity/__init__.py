"""SynthCity: the built-in two-domain street-scene benchmark (source like GTA5, target like
Cityscapes), deterministic given a seed."""

from .domains import DOMAINS, SOURCE, TARGET, DomainStyle
from .generator import SynthConfig, generate, render_image
from .shifts import SHIFTS, Shift, get_shift

__all__ = ["DOMAINS", "SHIFTS", "SOURCE", "TARGET", "DomainStyle", "Shift", "SynthConfig", "generate",
           "get_shift", "render_image"]
