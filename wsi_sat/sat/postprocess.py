"""Mask clean-up in physical units where the pixel size is known."""

from __future__ import annotations

import cv2
import numpy as np

from wsi_sat.config import PostprocessConfig


def min_area_px(cfg: PostprocessConfig, mpp: float | None) -> int:
    """Smallest kept object / hole in pixels: µm² converted when the pixel size is known."""
    if cfg.min_area_um2 is not None and mpp:
        return int(round(cfg.min_area_um2 / (mpp * mpp)))
    return cfg.min_area_px


def clean_mask(mask: np.ndarray, cfg: PostprocessConfig, mpp: float | None = None) -> np.ndarray:
    """Remove objects smaller than the min area; fill holes smaller than it (4-connected, as
    scikit-image's remove_small_objects / remove_small_holes; holes touching the border count)."""
    area = min_area_px(cfg, mpp)
    out = mask.astype(bool)
    if area > 0:
        out = _large_components(out, area)
        if cfg.fill_holes:
            out = ~_large_components(~out, area)
    return out


def _large_components(mask: np.ndarray, area: int) -> np.ndarray:
    """Pixels of the 4-connected components of `mask` with at least `area` pixels."""
    if not mask.any():
        return mask
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4,
                                                           ltype=cv2.CV_32S)
    keep = stats[:, cv2.CC_STAT_AREA] >= area
    keep[0] = False  # OpenCV's label 0 is the unset pixels
    return keep[labels]


def clean_labels(labels: np.ndarray, cfg: PostprocessConfig, mpp: float | None = None
                 ) -> np.ndarray:
    """Drop instances smaller than the min area (labels stay as they are otherwise)."""
    area = min_area_px(cfg, mpp)
    if area <= 0 or labels.max() == 0:
        return labels
    counts = np.bincount(labels.ravel())
    small = np.nonzero(counts < area)[0]
    small = small[small > 0]
    out = labels.copy()
    out[np.isin(out, small)] = 0
    return out
