"""Per-patch quantities on a feature grid: mask coverage and colour / stain features.

A grid is given by its shape (gh, gw) and its patch size in original pixels (py, px); the last
row and column may cover the image only partly and are used like every other patch.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hed, rgb2lab


def _block_mean(values: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                ) -> np.ndarray:
    """Mean of `values` (H, W, C) over each patch (gh, gw, C); patches clipped to the image."""
    h, w = values.shape[:2]
    gh, gw = grid_hw
    y_edges = np.minimum(np.round(np.arange(gh + 1) * patch_hw[0]).astype(int), h)
    x_edges = np.minimum(np.round(np.arange(gw + 1) * patch_hw[1]).astype(int), w)
    y_edges[-1] = h
    x_edges[-1] = w
    integral = np.zeros((h + 1, w + 1, values.shape[2]), dtype=np.float64)
    integral[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    y0, y1 = y_edges[:-1], np.maximum(y_edges[1:], y_edges[:-1] + 1)
    x0, x1 = x_edges[:-1], np.maximum(x_edges[1:], x_edges[:-1] + 1)
    y1 = np.minimum(y1, h)
    x1 = np.minimum(x1, w)
    y0 = np.minimum(y0, y1 - 1)
    x0 = np.minimum(x0, x1 - 1)
    s = (
        integral[y1][:, x1]
        - integral[y0][:, x1]
        - integral[y1][:, x0]
        + integral[y0][:, x0]
    )
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :])[..., None]
    return (s / area).astype(np.float32)


def mask_fraction(mask: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                  ) -> np.ndarray:
    """Fraction (gh, gw) of each patch's pixels that are foreground in a binary mask."""
    return _block_mean(mask.astype(np.float32)[..., None], grid_hw, patch_hw)[..., 0]


def pixel_colour(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour/stain channels (H, W, 5): L, a, b scaled to ~[-1, 1], H and E stains."""
    rgb = image.astype(np.float32) / 255.0
    lab = rgb2lab(rgb)
    hed = rgb2hed(rgb)
    return np.stack(
        [lab[..., 0] / 50.0 - 1.0, lab[..., 1] / 64.0, lab[..., 2] / 64.0,
         hed[..., 0] * 10.0, hed[..., 1] * 10.0],
        axis=-1,
    ).astype(np.float32)


def patch_colour(image: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                 ) -> np.ndarray:
    """Colour features per patch (gh, gw, 10): mean and standard deviation of `pixel_colour`."""
    pc = pixel_colour(image)
    mean = _block_mean(pc, grid_hw, patch_hw)
    sq = _block_mean(pc * pc, grid_hw, patch_hw)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return np.concatenate([mean, std], axis=-1)
