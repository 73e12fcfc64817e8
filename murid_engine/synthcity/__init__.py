"""SynthCity: the built-in two-domain street-scene benchmark (source like GTA5, target like
Cityscapes), deterministic given a seed."""

from .domains import DOMAINS, SOURCE, TARGET, DomainStyle
from .generator import SynthConfig, generate, render_image

__all__ = ["DOMAINS", "SOURCE", "TARGET", "DomainStyle", "SynthConfig", "generate", "render_image"]
