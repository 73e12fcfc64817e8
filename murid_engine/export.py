"""Exporting the student for deployment outside this project: TorchScript or ONNX.

The exported model takes a float32 N×3×H×W RGB tensor scaled to [0, 1] (it normalises with the
ImageNet statistics inside) and returns N×C×H×W logits at the input size; N, H and W are free
(dynamic axes), and `export_student` checks that after writing the file by running it at two
sizes against the PyTorch student. Metadata (classes, palette, input layout) travel inside the
file: TorchScript's extra file `murid.json`, ONNX's metadata_props.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes
from murid_engine.labels import CLASS_NAMES, PALETTE

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
OPSET = 17
AGREEMENT = 0.999  # the least share of pixels whose argmax must match the PyTorch student


class LogitsOnly(nn.Module):
    """A DeepLabV2 whose forward returns the logits tensor alone (what exporters want)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


@dataclass
class ExportResult:
    path: Path
    format: str
    agreement: dict[str, float] = field(default_factory=dict)  # "WxH" -> share of equal argmax pixels

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "agreement": self.agreement}


def metadata(num_classes: int, trained_size: tuple[int, int] | None) -> dict[str, Any]:
    return {
        "input": "float32 N x 3 x H x W, RGB scaled to [0, 1] (normalised inside the model)",
        "output": f"float32 N x {num_classes} x H x W logits; argmax over dim 1 = train id",
        "classes": list(CLASS_NAMES[:num_classes]),
        "palette": PALETTE[:num_classes].tolist(),
        "trained_size": list(trained_size) if trained_size else None,
    }


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tracer warnings about shape-dependent Python ints (the traced sizes stay dynamic, as
        # export_student checks), and TorchScript's deprecation notice: the format is still
        # what plain `torch.jit.load` reads without this project.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={"murid.json": json.dumps(meta)})
    return buffer.getvalue()


def _onnx_bytes(model: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs the 'onnx' package: pip install onnx onnxruntime") from None
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        # dynamo=False: the TorchScript-based exporter, which needs no onnxscript and handles
        # the dynamic H and W of the bilinear upsampling directly.
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes})
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "murid", json.dumps(meta)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _run_exported(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking the ONNX export needs 'onnxruntime': pip install onnxruntime") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def check_sizes(size: tuple[int, int]) -> list[tuple[int, int]]:
    """The export's own size and another one (odd-sized) to prove the axes are dynamic."""
    w, h = size
    return [(w, h), (max(9, w // 2 + 3), max(9, h // 2 + 5))]


@torch.no_grad()
def export_student(net: nn.Module, fmt: str, out: Path, size: tuple[int, int],
                   trained_size: tuple[int, int] | None = None,
                   on_step: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write `net` (a DeepLabV2, eval mode is set) to `out` as `fmt` and verify it.

    `size` (w, h) is the example input that traces the graph; the file is then run at that
    size and another against the PyTorch student, and refused if the argmax agrees on fewer
    than 99.9% of the pixels. `on_step(done, total)` follows the trace and each check
    (progress); when it raises (a cancel), the file written is removed and the exception goes on.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / ('student' + SUFFIXES[fmt])}")
    if not out.parent.is_dir():
        raise UserError(f"the folder of --out {out} does not exist")
    model = LogitsOnly(net).eval().cpu()
    w, h = size
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    meta = metadata(int(model(example).shape[1]), trained_size)
    steps = 1 + len(check_sizes(size))
    data = (_torchscript_bytes if fmt == "torchscript" else _onnx_bytes)(model, example, meta)
    if on_step is not None:
        on_step(1, steps)  # a cancel here: nothing was written yet
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    result = ExportResult(out, fmt)
    gen = torch.Generator().manual_seed(1)
    try:
        for n, (cw, ch) in enumerate(check_sizes(size), start=1):
            x = torch.rand(n, 3, ch, cw, generator=gen)
            ref = model(x).numpy()
            got = _run_exported(out, fmt, x.numpy())
            if got.shape != ref.shape:
                raise UserError(f"the exported {fmt} model returned shape {got.shape} for an input of "
                                f"{cw}x{ch}, expected {ref.shape}; the file was removed")
            share = float((got.argmax(1) == ref.argmax(1)).mean())
            result.agreement[f"{cw}x{ch}"] = round(share, 6)
            if share < AGREEMENT:
                raise UserError(f"the exported {fmt} model agrees with the PyTorch student on only "
                                f"{100 * share:.2f}% of the pixels at {cw}x{ch}; the file was removed")
            if on_step is not None:
                on_step(1 + n, steps)
    except BaseException:
        out.unlink(missing_ok=True)  # an unchecked (or failed, or cancelled) export is not kept
        raise
    return result
