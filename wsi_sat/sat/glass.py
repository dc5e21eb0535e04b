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

from wsi_sat.morphology import grow
from wsi_sat.sat.patches import mask_fraction


def glass_pixels(image: np.ndarray, glass_rgb: tuple[float, float, float],
                 max_distance: float) -> np.ndarray:
    """(H, W) bool: pixels (3x3 mean) within `max_distance` (RGB) of the slide's glass colour."""
    img = cv2.blur(np.ascontiguousarray(image, dtype=np.float32), (3, 3),
                   borderType=cv2.BORDER_REFLECT)
    diff = img - np.asarray(glass_rgb, dtype=np.float32)
    return np.einsum("ijk,ijk->ij", diff, diff) < max_distance * max_distance


def _per_pixel(blocks: np.ndarray, patch_hw: tuple[float, float], hw: tuple[int, int]
               ) -> np.ndarray:
    """A (gh, gw) patch map spread onto the (H, W) pixels of each patch (nearest)."""
    rows = np.minimum((np.arange(hw[0]) / patch_hw[0]).astype(int), blocks.shape[0] - 1)
    cols = np.minimum((np.arange(hw[1]) / patch_hw[1]).astype(int), blocks.shape[1] - 1)
    return blocks[rows][:, cols]


def anchored_target(pred: np.ndarray, tissue_px: np.ndarray, near_tissue: np.ndarray,
                    patch_hw: tuple[float, float], close_px: float,
                    min_tissue_fraction: float = 0.5) -> np.ndarray:
    """The prediction kept where it is anchored on tissue.

    pred: (H, W) predicted target; tissue_px: tissue-coloured pixels of the slide's tissue;
    near_tissue: the slide's tissue grown by its margin. A patch (`patch_hw` pixels) anchors
    the target when most of it is predicted and at least `min_tissue_fraction` of it is
    tissue-coloured. Kept: predicted pixels of anchoring patches, predicted tissue-coloured
    pixels within one patch of them (the object's edge), and any other predicted pixel only
    inside the morphological closing (a disk of `close_px`) of the anchors — a lumen, a pale
    gap between target cells — and near tissue. A closing fills concavities, never the glass
    along a straight or convex edge: no halo."""
    h, w = pred.shape
    grid_hw = (math.ceil(h / patch_hw[0]), math.ceil(w / patch_hw[1]))
    blocks = ((mask_fraction(pred, grid_hw, patch_hw) >= 0.5)
              & (mask_fraction(tissue_px, grid_hw, patch_hw) >= min_tissue_fraction))
    anchor = pred & _per_pixel(blocks, patch_hw, (h, w))
    if not anchor.any():
        return anchor
    out = anchor | (pred & tissue_px & grow(anchor, max(patch_hw)))
    if close_px <= 0:
        return out
    enclosed = ~grow(~grow(anchor, close_px), close_px)
    return out | (pred & near_tissue & enclosed)
