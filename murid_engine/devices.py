"""Where a job computes and in which precision: CPU or a GPU chosen automatically (DESIGN.md §7).

CPU: float32, no autocast, contiguous (NCHW) tensors: exactly the path the CPU demo was tuned on.
CUDA: autocast in bfloat16 where the GPU supports it (Ampere and later; same exponent range as
float32, so no loss scaling), else float16 with a GradScaler, which multiplies the loss before
backward so that small float16 gradients do not flush to zero and skips a step whose gradients
overflowed (PyTorch "Automatic Mixed Precision" recipe). Convolutions run channels-last, the
layout cuDNN's tensor-core kernels use for mixed precision (PyTorch "Channels Last Memory
Format" tutorial). The decisions are plain functions of a device type and flags, so the CPU
tests exercise them; the CUDA-only lines are the few marked below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from murid_engine.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'; a missing GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for, but this machine has no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device '{name}' is not a device name (auto, cpu, cuda or cuda:N)") from None


@dataclass(frozen=True)
class Precision:
    """How a training step runs on its device."""
    autocast: bool  # run the forward under torch.autocast
    dtype: torch.dtype  # the autocast dtype (float32 when autocast is off)
    loss_scaling: bool  # float16: scale the loss with a GradScaler
    channels_last: bool  # model and 4-D inputs in channels-last memory format

    @classmethod
    def choose(cls, device_type: str, amp: bool, bf16_supported: bool | None = None) -> "Precision":
        """The precision for `device_type` ('cpu', 'cuda') with the config's `amp` flag.

        `bf16_supported` defaults to asking the GPU (given explicitly by tests).
        """
        if device_type != "cuda":
            return cls(autocast=False, dtype=torch.float32, loss_scaling=False, channels_last=False)
        if not amp:
            return cls(autocast=False, dtype=torch.float32, loss_scaling=False, channels_last=True)
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()  # CUDA only
        if bf16_supported:
            return cls(autocast=True, dtype=torch.bfloat16, loss_scaling=False, channels_last=True)
        return cls(autocast=True, dtype=torch.float16, loss_scaling=True, channels_last=True)

    def autocast_context(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.autocast)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A GradScaler that scales only for float16; disabled, it passes values through."""
        return torch.amp.GradScaler(device.type, enabled=self.loss_scaling)

    def model(self, module: nn.Module) -> nn.Module:
        """The module in this precision's memory format (in place; returned for chaining)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def inputs(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """A 4-D image batch in this precision's memory format; labels and None pass unchanged."""
        if self.channels_last and x is not None and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def optimiser_step(total: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler) -> None:
    """zero_grad, backward and step through the scaler (a no-op wrapper unless float16)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
