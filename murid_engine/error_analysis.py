"""Where the models are wrong, image by image, on the labelled target val split (no Qt).

For every val image and every model the project holds (source-only, teacher, student), the
image's own confusion counts (K × K+1, as `metrics.confusion_matrix`) and the prediction itself
are kept in the project. From the counts come each image's mIoU and per-class IoU (the rule of
`metrics.SegmentationScores`, applied to one image) and the images that hold a given confusion
most; from the stored predictions a browser draws any image without running a model again.

    errors/index.npz                       the counts, stems, image files, what was analysed
    errors/run-XXXXXXXX/<model>/<stem>.png the predictions (train ids) of the run the index names

A run writes its predictions into a fresh run folder and the index last (atomically), so a
cancelled or failed run leaves the previous analysis as it was.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes, read_index_png, write_grey_png
from murid_engine.jobs import Control, Progress, StageFinished, StageStarted
from murid_engine.labels import IGNORE, NUM_CLASSES
from murid_engine.metrics import confusion_matrix
from murid_engine.project import Project

ERRORS_DIR = "errors"
INDEX_FILE = "index.npz"
STAGE = "error analysis"
FORMAT = 1

# The error map's values.
CORRECT, WRONG, VOID = 0, 1, 2


# ---------------------------------------------------------------------------- per-image scores
def per_image_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class from confusion counts (..., K, K+1): (..., K) floats, NaN where the union is 0.

    The rule of `SegmentationScores.from_matrix`: predictions that are no class (the last
    column) are false negatives of their ground-truth class.
    """
    m = np.asarray(confusion, dtype=np.int64)
    k = m.shape[-2]
    tp = np.diagonal(m[..., :k], axis1=-2, axis2=-1).astype(np.float64)
    union = m.sum(axis=-1) + m[..., :k].sum(axis=-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def per_image_miou(confusion: np.ndarray) -> np.ndarray:
    """Mean IoU over the classes present in ground truth or prediction; NaN for an all-void image."""
    iou = per_image_iou(confusion)
    present = ~np.isnan(iou)
    n = present.sum(axis=-1)
    total = np.where(present, iou, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def error_map(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 map: WRONG where a labelled pixel is mispredicted, VOID where the label is ignore, else CORRECT."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    out = np.where(gt == pred, CORRECT, WRONG).astype(np.uint8)
    out[gt == IGNORE] = VOID
    return out


# ---------------------------------------------------------------------------- the analysis
@dataclass(eq=False)
class ErrorAnalysis:
    """Per-image results of each model on one labelled split (what errors/index.npz holds)."""

    models: tuple[str, ...]
    stems: tuple[str, ...]
    images: tuple[str, ...]  # the image file of each stem (tooltips)
    confusion: np.ndarray  # (N images, M models, K, K + 1) int64 counts
    dataset: str  # KIND:PATH of the analysed data
    split: str | None
    run_dir: Path  # where <model>/<stem>.png lie
    fingerprints: dict[str, list[int]] = field(default_factory=dict)  # model -> checkpoint [mtime_ns, size]

    def __post_init__(self) -> None:
        n, m = len(self.stems), len(self.models)
        if self.confusion.shape[:2] != (n, m) or len(self.images) != n:
            raise ValueError(f"an analysis of {n} images and {m} models cannot hold counts of shape "
                             f"{self.confusion.shape} and {len(self.images)} image files")

    def __len__(self) -> int:
        return len(self.stems)

    def _model(self, model: str) -> int:
        if model not in self.models:
            raise KeyError(f"the analysis holds no '{model}' (it holds {', '.join(self.models)})")
        return self.models.index(model)

    def counts(self, model: str) -> np.ndarray:
        """(N, K, K + 1) per-image confusion counts of `model`."""
        return self.confusion[:, self._model(model)]

    def iou(self, model: str) -> np.ndarray:
        """(N, K) per-image, per-class IoU of `model` (NaN: class neither in the label nor predicted)."""
        return per_image_iou(self.counts(model))

    def miou(self, model: str) -> np.ndarray:
        """(N,) each image's own mIoU under `model`."""
        return per_image_miou(self.counts(model))

    def worst_first(self, model: str) -> list[int]:
        """Image indices by their mIoU under `model`, lowest first; all-void images last."""
        miou = self.miou(model)
        return sorted(range(len(self)), key=lambda i: (np.isnan(miou[i]), miou[i], self.stems[i]))

    def confusion_ranking(self, model: str, gt: int, pred: int) -> list[tuple[int, int]]:
        """(image index, pixels) where class `gt` is predicted as `pred`, most pixels first.

        On the diagonal (gt == pred) the pixels are those of `gt` predicted as anything else
        (the class missed), which is what a user clicking a diagonal cell looks for.
        """
        counts = self.counts(model)
        if gt == pred:
            pixels = counts[:, gt, :].sum(axis=1) - counts[:, gt, gt]
        else:
            pixels = counts[:, gt, pred]
        order = sorted((i for i in range(len(self)) if pixels[i] > 0),
                       key=lambda i: (-int(pixels[i]), self.stems[i]))
        return [(i, int(pixels[i])) for i in order]

    def prediction_path(self, model: str, index: int) -> Path:
        return self.run_dir / model / f"{self.stems[index]}.png"

    def read_prediction(self, model: str, index: int) -> np.ndarray:
        return read_index_png(self.prediction_path(model, index))

    def stale_reason(self, project: Project) -> str | None:
        """Why the analysis no longer shows the project's models (None: it does)."""
        held = tuple(held_models(project))
        if held != self.models:
            return (f"it covers {', '.join(self.models) or 'no model'}, the project now holds "
                    f"{', '.join(held) or 'none'}")
        changed = [m for m in self.models if fingerprint(project, m) != self.fingerprints.get(m)]
        if changed:
            return f"the {', '.join(changed)} changed after it was made"
        return None

    # ------------------------------------------------------------------ storage
    def _meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "models": list(self.models), "stems": list(self.stems),
                "images": list(self.images), "dataset": self.dataset, "split": self.split,
                "run": self.run_dir.name, "fingerprints": self.fingerprints}

    def save(self, index: Path) -> None:
        """Write the index atomically (the predictions are already in run_dir)."""
        buf = io.BytesIO()
        big = int(self.confusion.max(initial=0)) >= 2 ** 31
        np.savez_compressed(buf, confusion=self.confusion.astype(np.int64 if big else np.int32),
                            meta=np.array(json.dumps(self._meta())))
        atomic_write_bytes(index, buf.getvalue())

    @classmethod
    def load(cls, index: Path) -> ErrorAnalysis:
        try:
            with np.load(index, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                confusion = data["confusion"].astype(np.int64)
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')}, expected {FORMAT}")
            return cls(tuple(meta["models"]), tuple(meta["stems"]), tuple(meta["images"]), confusion,
                       meta["dataset"], meta["split"], index.parent / meta["run"],
                       {k: list(v) for k, v in meta["fingerprints"].items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{index} cannot be read ({exc}); analyse the errors again") from None


def errors_dir(project: Project) -> Path:
    return project.root / ERRORS_DIR


def load_analysis(project: Project) -> ErrorAnalysis | None:
    """The project's last error analysis, or None when it has none."""
    index = errors_dir(project) / INDEX_FILE
    return ErrorAnalysis.load(index) if index.is_file() else None


def held_models(project: Project) -> list[str]:
    """The models an evaluation compares that the project holds, lower bound first."""
    from murid_engine.comparison import available_models  # torch-heavy: imported when used
    from murid_engine.usecases import COMPARED

    return [n for n in available_models(project) if n in COMPARED]


def fingerprint(project: Project, model: str) -> list[int] | None:
    """What tells a checkpoint apart from a later one: [mtime_ns, size] (None: no checkpoint)."""
    try:
        st = project.checkpoint_path(model).stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


# ---------------------------------------------------------------------------- writing
class AnalysisWriter:
    """Collects one run image by image: predictions go to a fresh run folder, the index last."""

    def __init__(self, folder: Path, models: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.models = tuple(models)
        self.run_dir = self.folder / f"run-{uuid.uuid4().hex[:8]}"
        for m in self.models:
            (self.run_dir / m).mkdir(parents=True, exist_ok=True)
        self._stems: list[str] = []
        self._images: list[str] = []
        self._counts: list[np.ndarray] = []

    def add(self, stem: str, image: str | Path, gt: np.ndarray, predictions: Mapping[str, np.ndarray]) -> None:
        """One image: its ground truth and each model's train-id prediction at the label's size."""
        if stem in self._stems:
            raise UserError(f"two val images are named {stem} ({image} and {self._images[self._stems.index(stem)]})")
        counts = []
        for m in self.models:
            pred = np.asarray(predictions[m], dtype=np.uint8)
            counts.append(confusion_matrix(gt, pred, NUM_CLASSES))
            write_grey_png(self.run_dir / m / f"{stem}.png", pred)
        self._stems.append(stem)
        self._images.append(str(image))
        self._counts.append(np.stack(counts))

    def commit(self, dataset: str, split: str | None, fingerprints: dict[str, list[int]]) -> ErrorAnalysis:
        """Write the index (this run replaces the last) and remove older runs' predictions."""
        k = NUM_CLASSES
        confusion = (np.stack(self._counts) if self._counts
                     else np.zeros((0, len(self.models), k, k + 1), np.int64))
        analysis = ErrorAnalysis(self.models, tuple(self._stems), tuple(self._images), confusion,
                                 dataset, split, self.run_dir, dict(fingerprints))
        analysis.save(self.folder / INDEX_FILE)
        for old in self.folder.glob("run-*"):
            if old != self.run_dir:
                shutil.rmtree(old, ignore_errors=True)
        return analysis

    def abort(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- the job
def analyse_project(project: Project, sink: Callable[[Any], None], control: Control | None = None,
                    spec: str | None = None, split: str | None = None) -> ErrorAnalysis | None:
    """Run every model the project holds over its labelled val split, one image at a time.

    Progress follows every image and `control` is checked before each model's prediction, so
    a stop returns None within one prediction and leaves the previous analysis as it was.
    """
    from murid_engine.data import open_dataset, resolve_split
    from murid_engine.devices import resolve_device
    from murid_engine.evaluation import resize_nearest
    from murid_engine.inference import predict_image
    from murid_engine.model_store import project_model

    cfg = project.config
    names = held_models(project)
    if not names:
        raise UserError(f"{project.root} has no trained model yet; train it first")
    spec = spec or cfg.data.target
    if not spec:
        raise UserError(f"{project.root} has no target dataset (data.target)")
    split = resolve_split(spec, split, cfg.data.val_split)
    dataset = open_dataset(spec, split).require_labels()
    if not dataset.samples:
        raise UserError(f"{dataset.root} has no val images to analyse")
    prints = {n: fingerprint(project, n) for n in names}  # before loading: a later save shows as stale
    device = resolve_device(cfg.device)
    size = tuple(cfg.data.target_size) if cfg.data.target_size else None
    models = {n: project_model(project, n).model.to(device).eval() for n in names}
    sink(StageStarted(STAGE))
    writer = AnalysisWriter(errors_dir(project), names)
    try:
        total = len(dataset)
        for i, sample in enumerate(dataset.samples):
            image, gt = dataset.read_pair(i)
            predictions = {}
            for name, model in models.items():
                if control is not None and control.checkpoint():
                    writer.abort()
                    return None
                pred, _ = predict_image(model, image, size, device)
                predictions[name] = resize_nearest(pred, gt.shape)
            writer.add(sample.stem, sample.image, gt, predictions)
            sink(Progress(STAGE, i + 1, total))
        analysis = writer.commit(spec, split, prints)
    except BaseException:
        writer.abort()
        raise
    sink(StageFinished(STAGE))
    return analysis


# ---------------------------------------------------------------------------- one image
@dataclass(eq=False)
class ImageErrors:
    """One val image as a browser shows it: image, label, each model's prediction and error map."""

    index: int
    stem: str
    rgb: np.ndarray  # uint8 H×W×3
    gt: np.ndarray  # uint8 H×W train ids, 255 void
    predictions: dict[str, np.ndarray]  # model -> uint8 H×W (None-free: missing files raise)
    errors: dict[str, np.ndarray]  # model -> error_map(gt, prediction)


class ValImages:
    """The analysed split's images by stem; the dataset is listed on first use (off the GUI thread)."""

    def __init__(self, analysis: ErrorAnalysis) -> None:
        self.analysis = analysis
        self._dataset = None
        self._index: dict[str, int] = {}

    def load(self, index: int) -> ImageErrors:
        from murid_engine.data import open_dataset

        if self._dataset is None:
            self._dataset = open_dataset(self.analysis.dataset, self.analysis.split)
            self._index = {s.stem: i for i, s in enumerate(self._dataset.samples)}
        stem = self.analysis.stems[index]
        if stem not in self._index:
            raise UserError(f"{stem} is no longer in {self.analysis.dataset}; analyse the errors again")
        rgb, gt = self._dataset.read_pair(self._index[stem])
        predictions = {m: self.analysis.read_prediction(m, index) for m in self.analysis.models}
        for m, pred in predictions.items():
            if pred.shape != gt.shape:
                raise UserError(f"{self.analysis.prediction_path(m, index)} is {pred.shape[1]}x{pred.shape[0]}, "
                                f"its label {gt.shape[1]}x{gt.shape[0]}; analyse the errors again")
        errors = {m: error_map(gt, pred) for m, pred in predictions.items()}
        return ImageErrors(index, stem, rgb, gt, predictions, errors)
