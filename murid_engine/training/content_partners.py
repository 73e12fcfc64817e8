"""Content-matched MR partners: a target crop trains against a source image of similar content.

By default a target crop's MR partner is whichever source crop shares its batch index. CDTrans
(Xu et al., ICLR 2022) found cross-domain attention pays when a pair holds the same content, so
with `mr.partners: content` each curriculum round pairs every target image with the
`mr.partner_candidates` source images whose class histograms (fractions of labelled pixels) are
closest, in L1 distance, to the target image's pseudo-label histogram in that round; a batch's
source crop at index i is drawn from the candidates of the target image at index i. The source
histograms are computed once per run, the targets' once per round. Stages without pseudo-labels
(adapt) keep the batch-index pairing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

CHUNK = 512  # target rows of the distance matrix computed at once


def class_histogram(label: np.ndarray, num_classes: int) -> np.ndarray:
    """The fraction of the labelled pixels (ids below `num_classes`) in each class; all zeros
    when no pixel is labelled."""
    counts = np.bincount(label[label < num_classes].ravel(), minlength=num_classes)[:num_classes]
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def class_histograms(labels: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """N×C class histograms (float32) of label maps."""
    rows = [class_histogram(np.asarray(label), num_classes) for label in labels]
    return np.asarray(rows, np.float32).reshape(len(rows), num_classes)


def nearest_sources(target: np.ndarray, source: np.ndarray, k: int) -> np.ndarray:
    """T×k indices of the source histograms nearest (L1) each target histogram, nearest first;
    equal distances keep the lower index first."""
    if len(source) == 0:
        raise ValueError("content-matched partners need at least one source image")
    k = min(k, len(source))
    out = np.empty((len(target), k), np.int64)
    for start in range(0, len(target), CHUNK):
        block = np.abs(target[start:start + CHUNK, None, :] - source[None, :, :]).sum(-1)
        out[start:start + CHUNK] = np.argsort(block, axis=1, kind="stable")[:, :k]
    return out


class SourcePartners:
    """Each target image's candidate source partners (indices into the source domain)."""

    def __init__(self, candidates: np.ndarray):
        self.candidates = candidates

    def pick(self, target_indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One candidate of each target image, drawn uniformly."""
        rows = self.candidates[target_indices]
        return rows[np.arange(len(rows)), rng.integers(0, rows.shape[1], len(rows))]
