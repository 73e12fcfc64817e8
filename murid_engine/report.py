"""The human-readable evaluation report of a project: one HTML page with its images beside it.

    reports/evaluation.html          summary (mIoU, accuracy, speed), per-class IoU, confusion matrices
    reports/evaluation.json          the same figures for programs (comparison.write_comparison)
    reports/confusion_<model>.png    row-normalised confusion matrix (share of each ground-truth class)

The images are drawn with NumPy and OpenCV (no plotting library); the page needs no network.
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

import cv2
import numpy as np

from murid_engine.comparison import Comparison, ModelResult, write_comparison
from murid_engine.imageio import atomic_write_bytes
from murid_engine.labels import PALETTE

REPORT_NAME = "evaluation"
CELL = 26  # pixels per confusion-matrix cell
MARGIN = 130  # room for the class names on the left and (rotated) on top
FONT = cv2.FONT_HERSHEY_SIMPLEX


def confusion_image(matrix: np.ndarray, names: tuple[str, ...], title: str = "") -> np.ndarray:
    """A BGR uint8 image of a (K, K) confusion matrix, rows = ground truth, normalised per row.

    Each cell's colour (viridis) and number are the percentage of the row's ground-truth pixels
    predicted as the column's class; rows of classes absent from the labels are grey.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0]
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    top = MARGIN + 30
    height, width = top + k * CELL + 10, MARGIN + k * CELL + 10
    img = np.full((height, width, 3), 255, np.uint8)
    colours = cv2.applyColorMap(np.round(share * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    for r in range(k):
        for c in range(k):
            y, x = top + r * CELL, MARGIN + c * CELL
            colour = (200, 200, 200) if rows[r, 0] == 0 else tuple(int(v) for v in colours[r, c])
            cv2.rectangle(img, (x, y), (x + CELL - 1, y + CELL - 1), colour, -1)
            pct = int(round(100 * share[r, c]))
            if rows[r, 0] > 0 and pct >= 1:
                ink = (0, 0, 0) if share[r, c] > 0.6 else (255, 255, 255)
                text = str(pct)
                (tw, th), _ = cv2.getTextSize(text, FONT, 0.33, 1)
                cv2.putText(img, text, (x + (CELL - tw) // 2, y + (CELL + th) // 2), FONT, 0.33,
                            ink, 1, cv2.LINE_AA)
    # Class names: rows on the left, columns rotated on top; a palette swatch beside each.
    palette = PALETTE[:, ::-1]  # RGB -> BGR
    column_names = np.full((k * CELL, MARGIN - 10, 3), 255, np.uint8)  # drawn sideways, then rotated
    for i, name in enumerate(names):
        swatch = tuple(int(v) for v in palette[i % len(palette)])
        y = top + i * CELL
        cv2.rectangle(img, (MARGIN - 14, y + 6), (MARGIN - 4, y + CELL - 7), swatch, -1)
        cv2.putText(img, name[:16], (4, y + CELL // 2 + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(column_names, (4, i * CELL + 6), (14, (i + 1) * CELL - 7), swatch, -1)
        cv2.putText(column_names, name[:16], (20, i * CELL + CELL // 2 + 4), FONT, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    img[30:30 + MARGIN - 10, MARGIN:MARGIN + k * CELL] = cv2.rotate(column_names, cv2.ROTATE_90_COUNTERCLOCKWISE)
    heading = f"{title}: rows ground truth, columns prediction (% of row)" if title else \
        "rows ground truth, columns prediction (% of row)"
    cv2.putText(img, heading, (4, 20), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{100 * value:.2f}"


def _summary_rows(c: Comparison) -> str:
    rows = []
    for m in c.models:
        s = m.scores
        up = c.speedup(m.name)
        rows.append(
            f"<tr><td>{html.escape(m.title)}</td><td>{html.escape(m.backbone)}</td>"
            f"<td><b>{_pct(s.miou)}</b></td><td>{_pct(s.miou16)}</td><td>{_pct(s.miou13)}</td>"
            f"<td>{_pct(s.pixel_acc)}</td><td>{m.speed.ms:.2f}</td>"
            f"<td>{'&ndash;' if up is None else f'{up:.2f}&times;'}</td></tr>")
    return "\n".join(rows)


def _class_rows(c: Comparison) -> str:
    names = c.models[0].scores.class_names()
    rows = []
    for i, name in enumerate(names):
        r, g, b = (int(v) for v in PALETTE[i % len(PALETTE)])
        cells = []
        values = [m.scores.iou[i] for m in c.models]
        best = max((v for v in values if v is not None), default=None)
        for v in values:
            bar = 0 if v is None else round(100 * v)
            text = _pct(v)
            if v is not None and v == best and len(values) > 1:
                text = f"<b>{text}</b>"
            cells.append(f'<td><div class="bar" style="width:{bar}px"></div>{text}</td>')
        rows.append(f'<tr><td><span class="sw" style="background:rgb({r},{g},{b})"></span>'
                    f"{html.escape(name)}</td>{''.join(cells)}</tr>")
    return "\n".join(rows)


def _speed_text(c: Comparison) -> str:
    w, h = c.speed_size
    parts = [f"{html.escape(m.title)}: <b>{m.speed.ms:.2f} ms</b>" for m in c.models]
    text = (f"Milliseconds per target image of {w}&times;{h} (batch 1), {c.threads} thread(s), "
            f"{html.escape(c.device)}, median of the timed runs after a warm-up run. "
            f"The teacher's time includes the attention of its MR points to its source bank. "
            + "; ".join(parts) + ".")
    up = c.speedup("student")
    if up is not None:
        text += f" The student is <b>{up:.2f}&times;</b> as fast as the teacher."
    return text


def write_report(folder: Path, comparison: Comparison) -> Path:
    """Write the report files into `folder` (a project's reports/); returns the HTML page."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for m in comparison.models:
        png = folder / f"confusion_{m.name}.png"
        img = confusion_image(m.scores.confusion[:, :m.scores.num_classes], m.scores.class_names(), m.title)
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise RuntimeError(f"encoding {png} failed")
        atomic_write_bytes(png, buf.tobytes())
        images.append((m, png.name))
    write_comparison(folder, comparison)
    page = _page(comparison, images)
    path = folder / f"{REPORT_NAME}.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def _page(c: Comparison, images: list[tuple[ModelResult, str]]) -> str:
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    eval_size = "native size" if c.eval_size is None else f"resized to {c.eval_size[0]}&times;{c.eval_size[1]}"
    heads = "".join(f"<th>{html.escape(m.title)}</th>" for m in c.models)
    figures = "\n".join(f'<figure><img src="{name}" alt="confusion matrix of {html.escape(m.title)}">'
                        f"<figcaption>{html.escape(m.title)}</figcaption></figure>" for m, name in images)
    n_images = c.models[0].scores.n_images if c.models else 0
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>MURID evaluation: {html.escape(c.project.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.bar {{ display: inline-block; height: 10px; background: #4c78a8; margin-right: 6px; vertical-align: middle; }}
.sw {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
</style></head><body>
<h1>MURID evaluation: {html.escape(c.project.name)}</h1>
<p>Project {html.escape(str(c.project))}<br>Evaluated on {html.escape(c.dataset)}, {n_images} labelled
images at {eval_size}; written {html.escape(when)}. Scores are percentages; mIoU averages the
classes present in the labels or the predictions.</p>
<h2>Summary</h2>
<table><tr><th>model</th><th>backbone</th><th>mIoU</th><th>mIoU16</th><th>mIoU13</th>
<th>pixel acc.</th><th>ms / image</th><th>speed-up vs teacher</th></tr>
{_summary_rows(c)}
</table>
<h2>Speed</h2>
<p>{_speed_text(c)}</p>
<h2>Per-class IoU</h2>
<table><tr><th>class</th>{heads}</tr>
{_class_rows(c)}
</table>
<h2>Confusion matrices</h2>
{figures}
</body></html>
"""
