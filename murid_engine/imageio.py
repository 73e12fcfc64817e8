"""Reading and writing image files, with errors that name the file, and atomic writes.

Colour images are returned as RGB uint8 (H, W, 3). Label readers return the raw stored values;
each dataset reader maps them to train ids.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from murid_engine.errors import UserError
from murid_engine.labels import PALETTE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# A damaged file is reported by our own one-sentence UserError; OpenCV's warnings about it
# ("PNG input buffer is incomplete") would only add noise lines on standard error.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        raise UserError(f"{path} is an empty file")
    return data


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG", ".jpg"), (b"GIF8", "GIF", ".gif"), (b"BM", "BMP", ".bmp"),
               (b"II*\x00", "TIFF", ".tif"), (b"MM\x00*", "TIFF", ".tif"))


def _format_of(head: bytes) -> tuple[str, str] | None:
    """(format name, usual suffix) of an image file's first bytes, when known."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", ".webp"
    for magic, name, suffix in _SIGNATURES:
        if head.startswith(magic):
            return name, suffix
    return None


def _check_png_name(path: Path, data: np.ndarray) -> None:
    """A file named .png that holds another format says so (not 'truncated PNG')."""
    head = bytes(data[:16])
    if path.suffix.lower() != ".png" or head.startswith(_PNG_SIGNATURE):
        return
    found = _format_of(head)
    if found is not None:
        name, suffix = found
        raise UserError(f"{path} is a {name} file under a .png name; convert it to PNG "
                        f"(or rename it to {suffix} where {name} is accepted)")
    # Unknown bytes: the decoder's own "not a readable image" says enough.


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    _check_png_name(path, data)
    image = cv2.imdecode(data, flags)
    if image is None:
        raise UserError(f"{path} is not a readable image (corrupt, truncated or not an image)")
    if path.suffix.lower() == ".png" and not _png_complete(data):
        raise UserError(f"{path} is truncated (the PNG has no end marker)")
    return image


def _png_complete(data: np.ndarray) -> bool:
    # libpng can decode a PNG cut off after its last image chunk; the IEND marker proves
    # the file was written to the end.
    return bytes(data[-12:][4:8]) == b"IEND"


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); grey images are expanded, alpha dropped."""
    image = _decode(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_index_png(path: Path) -> np.ndarray:
    """A single-channel label image as uint8 (H, W): palette indices or grey values.

    Palette (indexed) PNGs must be read as indices: their colours mean nothing to a label map.
    """
    data = _read_bytes(path)  # a clear error for a missing or empty file
    _check_png_name(path, data)
    if bytes(data[:8]) == _PNG_SIGNATURE and not _png_complete(data):
        # Pillow decodes a PNG cut off after its pixel data without complaint.
        raise UserError(f"{path} is truncated (the PNG has no end marker)")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "L"):
                return np.array(img, dtype=np.uint8)
            if mode == "I;16" or mode == "I":
                values = np.array(img)
                if values.max(initial=0) > 255:
                    raise UserError(f"{path} holds label values above 255 (max {int(values.max())})")
                return values.astype(np.uint8)
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path} is not a readable label image ({exc})") from None
    raise UserError(
        f"{path} is a {mode} image; a label image must be single-channel (grey or palette) PNG"
    )


def read_unchanged(path: Path) -> np.ndarray:
    """The stored array as is (16-bit and channel order kept; OpenCV's BGR order)."""
    return _decode(path, cv2.IMREAD_UNCHANGED)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path} is not a readable image ({exc})") from None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    A failed write (a full disk) removes its temporary file and leaves the old `path` as it was;
    the OSError names `path` and carries the bytes it needed (`murid_bytes`) for the message.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.filename is None or exc.filename == tmp:
            exc.filename = str(path)
        exc.murid_bytes = len(data)  # type: ignore[attr-defined]
        try:  # now, before a caller's clean-up frees space and the message would contradict itself
            exc.murid_free = shutil.disk_usage(path.parent).free  # type: ignore[attr-defined]
        except OSError:
            pass
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _encode_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    suffix = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"encoding {path} failed")
    atomic_write_bytes(path, buf.tobytes())


def write_grey_png(path: Path, values: np.ndarray) -> None:
    """A uint8 or uint16 single-channel PNG (train ids, label ids)."""
    atomic_write_bytes(path, _encode_png(values))


def write_unchanged_png(path: Path, array: np.ndarray) -> None:
    """An array in OpenCV's channel order (BGR), 8- or 16-bit, written as is."""
    atomic_write_bytes(path, _encode_png(array))


def write_palette_png(path: Path, indices: np.ndarray, colors: np.ndarray) -> None:
    """An indexed PNG: the pixel values are `indices`, shown with `colors` (K, 3) RGB."""
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = colors
    img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_train_id_color_png(path: Path, train_ids: np.ndarray) -> None:
    """Train ids as an indexed PNG in the Cityscapes palette: values stay train ids."""
    write_palette_png(path, train_ids, PALETTE)
