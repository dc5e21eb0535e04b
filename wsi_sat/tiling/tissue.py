"""Tissue detection on a thumbnail, for bright-field (white glass) and fluorescence (dark) slides.

The mask drives three things: which tiles are segmented, which patches a tile's self-training
learns from (tissue only), and where predictions are kept (tissue grown by a margin, so that a
gland lumen open to the tissue edge, paler than the Otsu threshold, is not cut away while
glass far from tissue never becomes a detection).

The background colour is the median of the thumbnail's border; tissue is whatever differs from it
by more than an Otsu threshold on the colour distance, cleaned by morphology.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from wsi_sat.tiling.grid import Tile


def tissue_mask(thumb: np.ndarray, min_area_px: float = 4.0, min_distance: float = 12.0
                ) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail; pieces under `min_area_px` thumbnail pixels
    (the caller converts a physical area) are dropped."""
    img = ndimage.uniform_filter(thumb.astype(np.float32), size=(3, 3, 1))
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = np.median(border, axis=0)
    dist = np.linalg.norm(img - background, axis=-1)
    if float(dist.max() - dist.min()) < 1e-6:
        return np.zeros(thumb.shape[:2], dtype=bool)
    threshold = max(threshold_otsu(dist), min_distance)
    mask = dist > threshold
    mask = ndimage.binary_closing(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    min_size = max(4, int(round(min_area_px)))
    return remove_small_objects(mask, max_size=min_size - 1)


@dataclass(frozen=True)
class TissueMasks:
    """Thumbnail-resolution masks: `tissue` as detected, `keep` = tissue grown by the margin."""

    tissue: np.ndarray
    keep: np.ndarray


def grow(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """`mask` dilated by a disk of `radius_px` (thumbnail pixels; ≤ 0 returns it unchanged)."""
    if radius_px <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius_px


def tissue_masks(thumb: np.ndarray, margin_px: float, min_area_px: float = 4.0) -> TissueMasks:
    """Tissue (pieces of at least `min_area_px`) and tissue grown by `margin_px`, both in
    thumbnail pixels."""
    tissue = tissue_mask(thumb, min_area_px)
    return TissueMasks(tissue, grow(tissue, margin_px))


def tile_mask(tissue: np.ndarray, tile: Tile, working_size: tuple[int, int]) -> np.ndarray:
    """The tissue mask resampled onto a tile's read box (working pixels), nearest neighbour."""
    th, tw = tissue.shape
    w, h = working_size
    ys = np.clip(((np.arange(tile.read.y0, tile.read.y1) + 0.5) * th / h).astype(int), -1, th)
    xs = np.clip(((np.arange(tile.read.x0, tile.read.x1) + 0.5) * tw / w).astype(int), -1, tw)
    inside = ((ys >= 0) & (ys < th))[:, None] & ((xs >= 0) & (xs < tw))[None, :]
    out = tissue[np.clip(ys, 0, th - 1)][:, np.clip(xs, 0, tw - 1)]
    return out & inside
