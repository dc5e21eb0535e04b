"""Mask clean-up in physical units where the pixel size is known."""

from __future__ import annotations

import numpy as np

from wsi_sat.config import PostprocessConfig
from wsi_sat.geometry import Scale
from wsi_sat.morphology import large_components


def min_area_px(cfg: PostprocessConfig, mpp: float | None) -> int:
    """Smallest kept object / hole in pixels: µm² converted when the pixel size is known."""
    if cfg.min_area_um2 is not None and mpp:
        return int(round(Scale(mpp, mpp).area_px(cfg.min_area_um2)))
    return cfg.min_area_px


def clean_mask(mask: np.ndarray, cfg: PostprocessConfig, mpp: float | None = None) -> np.ndarray:
    """Remove objects smaller than the min area; fill holes smaller than it (4-connected, as
    scikit-image's remove_small_objects / remove_small_holes; holes touching the border count)."""
    area = min_area_px(cfg, mpp)
    out = mask.astype(bool)
    if area > 0:
        out = large_components(out, area)
        if cfg.fill_holes:
            out = ~large_components(~out, area)
    return out


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
