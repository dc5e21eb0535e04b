"""Binary masks between sizes and from polygons (nearest neighbour only: masks are never
interpolated)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image
from shapely.geometry import Polygon
from skimage.draw import polygon as fill_polygon


def resize_mask(mask: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """A boolean mask resampled to (w, h) by nearest neighbour."""
    img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    return np.asarray(img.resize(tuple(size_wh), Image.Resampling.NEAREST)) > 127


def rasterise(polygons: Iterable[Polygon], shape_hw: tuple[int, int],
              to_pixels: Callable[[np.ndarray], np.ndarray] = lambda xy: xy) -> np.ndarray:
    """Polygons (holes kept) filled into a (H, W) boolean mask. `to_pixels` maps a ring's (N, 2)
    (x, y) coordinates to pixel-index coordinates (x = column, y = row) of the mask. Polygons
    are painted in order: each exterior set, then its holes cleared."""
    out = np.zeros(shape_hw, bool)
    for poly in polygons:
        for i, ring in enumerate([poly.exterior, *poly.interiors]):
            xy = to_pixels(np.asarray(ring.coords, dtype=np.float64))
            rr, cc = fill_polygon(xy[:, 1], xy[:, 0], shape_hw)
            out[rr, cc] = i == 0
    return out
