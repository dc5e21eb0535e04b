"""Tissue detection on a thumbnail, for bright-field (white glass) and fluorescence (dark) slides.

The mask drives three things: which tiles are segmented, which patches a tile's self-training
learns from (tissue only), and where predictions are kept (tissue grown by a margin, so that a
gland lumen open to the tissue edge, paler than the Otsu threshold, is not cut away while
glass far from tissue never becomes a detection).

The background colour is the median of the thumbnail's border; tissue is whatever differs from it
by more than an Otsu threshold on the colour distance (capped by the border's own spread plus the
least contrast, so pale tissue on a clean, thin glass margin counts), cleaned by morphology.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from wsi_sat.config import WsiConfig
from wsi_sat.geometry import Scale, mask_on_box
from wsi_sat.morphology import closing, fill_holes, grow, large_components
from wsi_sat.tiling.grid import Tile


def tissue_mask(thumb: np.ndarray, wcfg: WsiConfig, *, min_area_px: float,
                max_hole_px: float | None = None) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail; pieces under `min_area_px` thumbnail pixels
    (the caller converts a physical area) are dropped. `wsi.tissue_min_contrast` is the least
    colour distance from the glass that counts as tissue (when above the Otsu threshold),
    `wsi.tissue_closing_iterations` the closing; holes up to `max_hole_px` (None: all) are
    filled."""
    min_distance, closing_iterations = wcfg.tissue_min_contrast, wcfg.tissue_closing_iterations
    # 3x3 mean per channel, mirrored border (scipy's uniform_filter 'reflect')
    img = cv2.blur(np.ascontiguousarray(thumb, dtype=np.float32), (3, 3),
                   borderType=cv2.BORDER_REFLECT)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = np.median(border, axis=0)
    diff = img - background.astype(np.float32)
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    if float(dist.max() - dist.min()) < 1e-6:
        return np.zeros(thumb.shape[:2], dtype=bool)
    # Otsu splits glass from tissue where glass is a large part of the thumbnail; where the
    # glass is a thin clean margin (a small slide, a tissue-filled scan) it splits dark tissue
    # from pale tissue instead: never threshold above the glass's own spread (the 99th
    # percentile of the border's distance) plus the least contrast
    border_spread = float(np.percentile(np.linalg.norm(border - background, axis=1), 99))
    threshold = max(min(threshold_otsu(dist), border_spread + min_distance), min_distance)
    mask = fill_holes(closing(dist > threshold, iterations=closing_iterations), max_hole_px)
    return large_components(mask, max(4, round(min_area_px)))


@dataclass(frozen=True)
class TissueMasks:
    """Thumbnail-resolution masks: `tissue` as detected, `keep` = tissue grown by the margin;
    `glass_rgb`: the colour of the slide's glass (its background: white in bright field, dark in
    fluorescence)."""

    tissue: np.ndarray
    keep: np.ndarray
    glass_rgb: tuple[float, float, float] = (255.0, 255.0, 255.0)


def glass_colour(thumb: np.ndarray, tissue: np.ndarray) -> tuple[float, float, float]:
    """Median colour of the thumbnail's pixels outside the tissue (3x3 mean, as the detection
    sees them); the border's median when the tissue covers everything."""
    img = cv2.blur(np.ascontiguousarray(thumb, dtype=np.float32), (3, 3),
                   borderType=cv2.BORDER_REFLECT)
    outside = img[~tissue] if (~tissue).any() else np.concatenate(
        [img[0], img[-1], img[:, 0], img[:, -1]])
    r, g, b = (float(v) for v in np.median(outside.reshape(-1, 3), axis=0))
    return r, g, b


def tissue_masks(thumb: np.ndarray, thumb_scale: Scale, wcfg: WsiConfig) -> TissueMasks:
    """Tissue of a thumbnail whose pixels are `thumb_scale`'s working pixels (pieces of at
    least `wsi.min_tissue_area_um2`, holes up to `wsi.max_hole_um2` filled), the tissue grown by
    `wsi.tissue_margin_um`, and the glass colour."""
    tissue = tissue_mask(thumb, wcfg, min_area_px=thumb_scale.area_px(wcfg.min_tissue_area_um2),
                         max_hole_px=thumb_scale.area_px(wcfg.max_hole_um2))
    return TissueMasks(tissue, grow(tissue, thumb_scale.px(wcfg.tissue_margin_um)),
                       glass_colour(thumb, tissue))


def tile_mask(tissue: np.ndarray, tile: Tile, working_size: tuple[int, int]) -> np.ndarray:
    """A thumbnail mask resampled onto a tile's read box (working pixels), nearest neighbour."""
    return mask_on_box(tissue, tile.read, working_size)
