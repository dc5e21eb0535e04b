"""Glass is never the target on its own.

A gland lumen, a vessel, a tear and the glass beside a tissue edge look alike to patch features
(pale, without texture), so a reference whose target holds white lumens matches every pale
area of a slide: the halo around tissue and the "glands" painted on the holes of a skin section.
A predicted pixel of the glass's colour is therefore kept only where target predicted on
tissue-coloured patches encloses it (a lumen inside a gland, or open to the tissue edge), never
on its own. Pure functions on a tile's arrays.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from wsi_sat.config import WsiConfig
from wsi_sat.geometry import Scale, take_sorted
from wsi_sat.morphology import grow
from wsi_sat.sat.patches import mask_fraction


def glass_pixels(image: np.ndarray, glass_rgb: tuple[float, float, float],
                 max_distance: float, block_px: int) -> np.ndarray:
    """(H, W) bool: pixels whose `block_px` x `block_px` block's mean colour lies within
    `max_distance` (RGB) of the slide's glass colour (the block mean smooths the scanner's noise
    like a 3x3 mean, and costs a fraction of a pixel-by-pixel test)."""
    h, w = image.shape[:2]
    small = cv2.resize(np.ascontiguousarray(image), (-(-w // block_px), -(-h // block_px)),
                       interpolation=cv2.INTER_AREA).astype(np.float32)
    sq = small - np.asarray(glass_rgb, dtype=np.float32)
    sq *= sq
    # the channels added in order, as .sum(axis=-1) does, without its slow 3-long reduction
    near = ((sq[..., 0] + sq[..., 1] + sq[..., 2]) < max_distance * max_distance
            ).astype(np.uint8)
    return cv2.resize(near, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _spread(small: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A coarse bool map spread onto (H, W) pixels, nearest (each pixel takes its block)."""
    return cv2.resize(small.astype(np.uint8), (hw[1], hw[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def anchored_target(pred: np.ndarray, tissue_px: np.ndarray, near_tissue: np.ndarray,
                    patch_hw: tuple[float, float], close_px: float,
                    min_tissue_fraction: float = 0.5, block_px: int = 4) -> np.ndarray:
    """The prediction kept where it is anchored on tissue.

    pred: (H, W) predicted target; tissue_px: tissue-coloured pixels of the slide's tissue;
    near_tissue: the slide's tissue grown by its margin. A patch (`patch_hw` pixels) anchors
    the target when most of it is predicted and at least `min_tissue_fraction` of it is
    tissue-coloured. Kept: predicted pixels of anchoring patches, predicted tissue-coloured
    pixels within one patch of them (the object's edge), and any other predicted pixel only
    inside the morphological closing (a disk of `close_px`) of the anchors — a lumen, a pale
    gap between target cells — and near tissue. A closing fills concavities, never the glass
    along a straight or convex edge: no halo. The growing and the closing run on
    `block_px`-pixel blocks (their cost falls with the square of the block)."""
    h, w = pred.shape
    grid_hw = (math.ceil(h / patch_hw[0]), math.ceil(w / patch_hw[1]))
    blocks = ((mask_fraction(pred, grid_hw, patch_hw) >= 0.5)
              & (mask_fraction(tissue_px, grid_hw, patch_hw) >= min_tissue_fraction))
    if not blocks.any():
        return np.zeros_like(pred, dtype=bool)
    rows = np.minimum((np.arange(h) / patch_hw[0]).astype(int), grid_hw[0] - 1)
    cols = np.minimum((np.arange(w) / patch_hw[1]).astype(int), grid_hw[1] - 1)
    anchor = pred & take_sorted(blocks, rows, cols)
    if not anchor.any():
        return anchor
    small_hw = (-(-w // block_px), -(-h // block_px))
    small = cv2.resize(anchor.astype(np.uint8), small_hw, interpolation=cv2.INTER_AREA) > 0
    out = anchor | (pred & tissue_px & _spread(grow(small, max(patch_hw) / block_px), (h, w)))
    if close_px <= 0:
        return out
    r = close_px / block_px
    enclosed = _spread(~grow(~grow(small, r), r), (h, w))
    return out | (pred & near_tissue & enclosed)


def keep_on_tissue(pred: np.ndarray, image: np.ndarray, tissue: np.ndarray,
                   near_tissue: np.ndarray, glass_rgb: tuple[float, float, float],
                   patch_hw: tuple[float, float], wcfg: WsiConfig, scale: Scale
                   ) -> np.ndarray:
    """A tile's prediction kept where it is anchored on the tile's tissue-coloured pixels
    (`wsi.glass_max_distance` from the slide's glass colour) and near tissue (`tissue`,
    `near_tissue`: the slide's masks on this tile)."""
    tissue_px = tissue & ~glass_pixels(image, glass_rgb, wcfg.glass_max_distance,
                                       wcfg.glass_block_px)
    return anchored_target(pred, tissue_px, near_tissue, patch_hw,
                           scale.px(wcfg.tissue_margin_um), wcfg.anchor_min_tissue_fraction,
                           wcfg.morphology_block_px)
