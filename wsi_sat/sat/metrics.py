"""Overlap metrics on binary masks (both empty counts as a perfect match)."""

from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    union = int((p | t).sum())
    return 1.0 if union == 0 else int((p & t).sum()) / union


def match_objects(labels: np.ndarray, truth: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping (predicted, true) label pairs of two instance label images (0 =
    background): the pairs (2, P), their intersections and IoUs (P,), and the areas of every
    predicted and true label (indexed by label)."""
    both = (labels > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([labels[both], truth[both]]).astype(np.int64), axis=1,
                             return_counts=True)
    area_p = np.bincount(labels.ravel().astype(np.int64))
    area_t = np.bincount(truth.ravel().astype(np.int64))
    ious = inter / (area_p[pairs[0]] + area_t[pairs[1]] - inter)
    return pairs, inter, ious, area_p, area_t

