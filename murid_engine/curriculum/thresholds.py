"""Class-balanced confidence thresholds for curriculum pseudo-labels (CBST).

CBST (Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced
Self-Training", ECCV 2018) picks one threshold per class c: tau_c is the confidence at which the
most confident fraction `portion` of the pixels *predicted as c* is kept. A single global
threshold would keep almost only the easy, frequent classes (road, sky); per-class quantiles keep
the same share of every class, so rare classes get pseudo-labels too.

The quantiles are computed over a whole split without holding its confidences: a per-class
histogram of confidences is accumulated image by image (float64 counts, so no overflow) and
the quantile is read off it.

Conventions
- A pixel is kept when ``conf >= tau[pred]``; otherwise it becomes IGNORE (255).
- A class that is never predicted gets tau = 1.0 (the cap does not lower it): it has no
  pixels, so nothing is kept, and 1.0 tells the GUI the class is absent from the round.
- ``cap``: tau_c = min(tau_c, cap). A class whose portion-quantile is above the cap (a very
  confident class) would otherwise keep only `portion` of pixels that are almost all correct;
  capping keeps every pixel at least `cap` confident, so a confident class is not starved
  (the cap used by CBST/CRST code and by IAST-style implementations, e.g. 0.9).
- Overrides (per-class thresholds set by the user in the GUI) replace the automatic value of
  exactly their classes, after the cap: the user's choice wins.
- Quantised confidence: ``level = round(clip(conf, 0, 1) * 255)`` stored as uint8, read back as
  ``level / 255``. A threshold tau keeps a level when ``level >= ceil(tau * 255)`` i.e. when
  ``level / 255 >= tau``. Rounds are thresholded on these levels (see rounds.py), so the GUI's
  live re-threshold of the saved PNGs equals what training uses, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from murid_engine.errors import UserError
from murid_engine.labels import IGNORE, NUM_CLASSES

LEVELS = 255  # confidence quantisation: uint8 level q stands for q / 255
DEFAULT_BINS = 4096  # float histograms: bin width 1/4096, interpolated within the bin
_NEVER = 256  # a level threshold no uint8 reaches (classes >= num_classes, e.g. 255)
_EPS = 1e-6  # float slack so that tau = q/255 maps back to level q, not q+1


def quantise_confidence(conf: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] (float) -> uint8 level round(conf * 255); a uint8 input is kept."""
    conf = np.asarray(conf)
    if conf.dtype == np.uint8:
        return conf
    conf = conf.astype(np.float32, copy=False)
    if np.isnan(conf).any():
        raise ValueError("confidence map contains NaN")
    return np.rint(np.clip(conf, 0.0, 1.0) * LEVELS).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray) -> np.ndarray:
    """Per-class float thresholds -> (256,) uint16 lookup of the lowest kept uint8 level.

    Entries past the classes (e.g. IGNORE = 255 in a prediction) are 256: never kept.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    lut = np.full(256, _NEVER, dtype=np.uint16)
    lut[: len(t)] = np.clip(np.ceil(t * LEVELS - _EPS), 0, _NEVER)
    return lut


class ConfidenceHistogram:
    """Per-class histogram of the confidence of the pixels predicted as each class.

    ``quantised=False``: `bins` equal bins over [0, 1]; ``add`` takes float confidences and the
    thresholds are interpolated within a bin (pixels assumed uniform in it).
    ``quantised=True``: 256 bins, one per uint8 level; ``add`` takes uint8 levels (floats are
    quantised) and the thresholds are exact levels q / 255: CBST's sort-and-index rule
    (the ceil(portion * N)-th most confident pixel), so at least `portion` is kept, ties included.
    Pixels whose prediction is not a class (>= num_classes, e.g. 255) are not counted.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, bins: int = DEFAULT_BINS,
                 quantised: bool = False) -> None:
        self.num_classes = num_classes
        self.quantised = quantised
        self.bins = LEVELS + 1 if quantised else int(bins)
        if self.bins < 2:
            raise ValueError(f"a histogram needs at least 2 bins, not {bins}")
        self.counts = np.zeros((num_classes, self.bins), dtype=np.float64)

    def add(self, pred: np.ndarray, conf: np.ndarray) -> None:
        """Count one image: `pred` (H, W) class ids, `conf` (H, W) confidence of that class."""
        pred = np.asarray(pred)
        conf = np.asarray(conf)
        if pred.shape != conf.shape:
            raise ValueError(f"prediction {pred.shape} and confidence {conf.shape} differ in shape")
        if self.quantised:
            idx = quantise_confidence(conf).astype(np.int64)
        else:
            c = conf.astype(np.float64, copy=False)
            if np.isnan(c).any():
                raise ValueError("confidence map contains NaN")
            idx = np.clip((c * self.bins).astype(np.int64), 0, self.bins - 1)
        p = pred.astype(np.int64).ravel()
        valid = (p >= 0) & (p < self.num_classes)
        flat = p[valid] * self.bins + idx.ravel()[valid]
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    @property
    def predicted(self) -> np.ndarray:
        """(num_classes,) number of pixels predicted as each class."""
        return self.counts.sum(axis=1)

    def thresholds(self, portion: float, cap: float | None = None) -> np.ndarray:
        """(num_classes,) float64 tau_c keeping the top `portion` of each class, capped."""
        _check_portion(portion, cap)
        tau = np.array([self._quantile(row, portion) for row in self.counts])
        if cap is not None:  # an unpredicted class keeps its 1.0: it has nothing to keep anyway
            tau = np.where(self.predicted > 0, np.minimum(tau, cap), tau)
        return tau

    def _quantile(self, counts: np.ndarray, portion: float) -> float:
        total = counts.sum()
        if total <= 0:
            return 1.0  # never predicted: nothing to keep
        # Relative slack so portion * N = 3.0000000000000004 still means "3 pixels".
        target = portion * total * (1 - 1e-12)
        tail = np.cumsum(counts[::-1])[::-1]  # tail[b] = pixels in bins b.. (conf >= edge b)
        b = int(np.searchsorted(-tail, -target, side="right")) - 1  # last bin with tail >= target
        if self.quantised:
            return b / LEVELS
        above = tail[b] - counts[b]
        frac = (target - above) / counts[b]  # share of bin b needed, from its top
        return float((b + 1 - frac) / self.bins)


Source = (ConfidenceHistogram | Iterable[tuple[np.ndarray, np.ndarray]]
          | tuple[np.ndarray, np.ndarray])


def class_thresholds(source: Source, portion: float, cap: float | None = None,
                     num_classes: int = NUM_CLASSES, bins: int = DEFAULT_BINS) -> np.ndarray:
    """CBST per-class thresholds over a whole split, streaming.

    `source` is a filled ConfidenceHistogram, an iterable of (pred, conf) pairs (consumed once,
    one image at a time) or a single (pred, conf) pair of arrays. A uint8 `conf` is read as
    quantised levels. Returns (num_classes,) float64.
    """
    if isinstance(source, ConfidenceHistogram):
        return source.thresholds(portion, cap)
    _check_portion(portion, cap)
    if isinstance(source, tuple) and len(source) == 2 and all(
            isinstance(a, np.ndarray) for a in source):
        source = [source]
    hist: ConfidenceHistogram | None = None
    for pred, conf in source:
        if hist is None:  # the first image decides float vs quantised
            hist = ConfidenceHistogram(num_classes, bins, quantised=np.asarray(conf).dtype == np.uint8)
        hist.add(pred, conf)
    if hist is None:
        return np.ones(num_classes)
    return hist.thresholds(portion, cap)


def apply_overrides(thresholds: np.ndarray, overrides: Mapping[int, float] | None) -> np.ndarray:
    """A copy of `thresholds` with exactly the overridden classes replaced (user wins)."""
    out = np.array(thresholds, dtype=np.float64, copy=True)
    for c, value in (overrides or {}).items():
        c = int(c)
        if not 0 <= c < len(out):
            raise UserError(f"threshold override for class {c}: classes are 0..{len(out) - 1}")
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise UserError(f"threshold override for class {c} must be in [0, 1], not {value}")
        out[c] = v
    return out


def apply_thresholds(pred: np.ndarray, conf: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Pseudo-labels (H, W) uint8: pred where conf >= tau[pred], IGNORE elsewhere.

    A uint8 `conf` is read as quantised levels (the same rule as `rethreshold`).
    """
    pred = np.asarray(pred)
    conf = np.asarray(conf)
    if conf.dtype == np.uint8:
        return rethreshold(pred, conf, thresholds)
    if pred.shape != conf.shape:
        raise ValueError(f"prediction {pred.shape} and confidence {conf.shape} differ in shape")
    table = np.full(256, np.inf)
    t = np.asarray(thresholds, dtype=np.float64)
    table[: len(t)] = t
    p = pred.astype(np.uint8, copy=False)
    return np.where(conf >= table[p], p, np.uint8(IGNORE)).astype(np.uint8, copy=False)


def rethreshold(pred: np.ndarray, conf_u8: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Vectorised re-threshold of a saved round image (uint8 pred and uint8 confidence levels).

    Two table look-ups and a compare: a few milliseconds on 2048x1024, fast enough for the GUI's
    live threshold sliders. Exactly the rule used to write the round's labels.
    """
    if pred.shape != conf_u8.shape:
        raise ValueError(f"prediction {pred.shape} and confidence {conf_u8.shape} differ in shape")
    if pred.dtype != np.uint8 or conf_u8.dtype != np.uint8:
        raise ValueError("rethreshold takes uint8 predictions and uint8 confidence levels")
    keep = conf_u8 >= threshold_levels(thresholds)[pred]
    out = pred.copy()
    out[~keep] = IGNORE
    return out


def kept_counts(counts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-class kept pixels from a quantised (C, 256) histogram under `thresholds`.

    The GUI's live kept-pixel counts for any slider position, without touching an image.
    """
    counts = np.asarray(counts, dtype=np.float64)
    lut = threshold_levels(thresholds)[: counts.shape[0]]
    tail = np.concatenate([np.cumsum(counts[:, ::-1], axis=1)[:, ::-1],
                           np.zeros((counts.shape[0], 1))], axis=1)  # tail[c, 256] = 0
    return tail[np.arange(counts.shape[0]), np.minimum(lut, counts.shape[1])]


def _check_portion(portion: float, cap: float | None) -> None:
    if not 0.0 < float(portion) <= 1.0:
        raise UserError(f"pseudo-label portion must be in (0, 1], not {portion}")
    if cap is not None and not 0.0 < float(cap) <= 1.0:
        raise UserError(f"threshold cap must be in (0, 1] or none, not {cap}")
