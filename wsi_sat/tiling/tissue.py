"""Tissue detection on a thumbnail, for bright-field (white glass) and fluorescence (dark) slides.

The background colour is the median of the thumbnail's border; tissue is whatever differs from it
by more than an Otsu threshold on the colour distance, cleaned by morphology.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects


def tissue_mask(thumb: np.ndarray, min_fraction: float = 0.0005, min_distance: float = 12.0
                ) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail."""
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
    min_size = max(4, int(min_fraction * mask.size))
    return remove_small_objects(mask, max_size=min_size - 1)
