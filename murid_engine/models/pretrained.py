"""ImageNet weights from a local file, in torchvision's key names, into a backbone.

The program never downloads weights (DESIGN.md §2): the user passes a file such as torchvision's
`resnet101-63fe2227.pth` with `--set model.pretrained=FILE`. Keys are matched by name after
removing a wrapper prefix ('module.', 'backbone.', 'encoder.'); the ImageNet classifier ('fc.*')
is dropped on purpose; every other missing or unexpected key is reported, and a tensor whose
shape differs (another depth or width) is an error naming it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from murid_engine.errors import UserError

_PREFIXES = ("module.", "backbone.", "encoder.", "model.")
_CONTAINERS = ("state_dict", "model", "model_state", "net")


@dataclass
class PretrainedReport:
    path: Path
    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # backbone keys the file lacks (left random)
    unexpected: list[str] = field(default_factory=list)  # file keys the backbone lacks (ignored)
    dropped_classifier: int = 0  # ImageNet 'fc.*' entries, dropped by design

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

        text = f"ImageNet weights {self.path}: {self.loaded} tensors loaded"
        if self.missing:
            text += f"; missing (left at random init): {few(self.missing)}"
        if self.unexpected:
            text += f"; unexpected (ignored): {few(self.unexpected)}"
        return text


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"ImageNet weights file {path} does not exist (model.pretrained)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(f"{path} is not a readable PyTorch weights file "
                        f"({str(exc).splitlines()[0][:100]})") from None
    for key in _CONTAINERS:  # checkpoints of other trainers wrap the state dict
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path} does not hold a state dict of tensors (torchvision's key names expected)")
    out = {}
    for key, value in data.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_pretrained(backbone: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy the matching tensors of `path` into `backbone` (in place) and report the rest."""
    path = Path(path).expanduser()
    weights = _read(path)
    report = PretrainedReport(path)
    own = backbone.state_dict()
    usable = {}
    for key, value in weights.items():
        if key.startswith("fc."):
            report.dropped_classifier += 1
        elif key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            raise UserError(f"{path}: '{key}' has shape {tuple(value.shape)}, the backbone expects "
                            f"{tuple(own[key].shape)} (weights of another network?)")
        else:
            usable[key] = value
    if not usable:
        raise UserError(f"{path} has no tensor with this backbone's key names "
                        "(torchvision ResNet names such as 'layer1.0.conv1.weight' expected)")
    report.missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    backbone.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report
