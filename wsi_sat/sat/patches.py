"""Per-patch quantities on a feature grid: mask coverage and colour / stain features.

A grid is given by its shape (gh, gw) and its patch size in original pixels (py, px); the last
row and column may cover the image only partly and are used like every other patch.
"""

from __future__ import annotations

import numpy as np


def _block_mean(values: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                ) -> np.ndarray:
    """Mean of `values` (H, W, C) over each patch (gh, gw, C); patches clipped to the image."""
    h, w = values.shape[:2]
    gh, gw = grid_hw
    y0 = np.minimum(np.round(np.arange(gh) * patch_hw[0]).astype(int), h - 1)
    x0 = np.minimum(np.round(np.arange(gw) * patch_hw[1]).astype(int), w - 1)
    if (np.diff(y0) > 0).all() and (np.diff(x0) > 0).all():  # the usual case: sums per block
        sums = np.add.reduceat(np.add.reduceat(values.astype(np.float32, copy=False), y0,
                                               axis=0), x0, axis=1)
        area = (np.diff(np.r_[y0, h])[:, None] * np.diff(np.r_[x0, w])[None, :])[..., None]
        return (sums / area).astype(np.float32)
    y_edges = np.minimum(np.round(np.arange(gh + 1) * patch_hw[0]).astype(int), h)
    x_edges = np.minimum(np.round(np.arange(gw + 1) * patch_hw[1]).astype(int), w)
    y_edges[-1] = h
    x_edges[-1] = w
    integral = np.zeros((h + 1, w + 1, values.shape[2]), dtype=np.float64)
    integral[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    ya, yb = y_edges[:-1], np.maximum(y_edges[1:], y_edges[:-1] + 1)
    xa, xb = x_edges[:-1], np.maximum(x_edges[1:], x_edges[:-1] + 1)
    yb = np.minimum(yb, h)
    xb = np.minimum(xb, w)
    ya = np.minimum(ya, yb - 1)
    xa = np.minimum(xa, xb - 1)
    s = (
        integral[yb][:, xb]
        - integral[ya][:, xb]
        - integral[yb][:, xa]
        + integral[ya][:, xa]
    )
    area = ((yb - ya)[:, None] * (xb - xa)[None, :])[..., None]
    return (s / area).astype(np.float32)


def mask_fraction(mask: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                  ) -> np.ndarray:
    """Fraction (gh, gw) of each patch's pixels that are foreground in a binary mask."""
    return _block_mean(mask.astype(np.float32)[..., None], grid_hw, patch_hw)[..., 0]


# sRGB → CIE Lab (D65) and Ruifrok–Johnston H&E(-DAB) deconvolution, as scikit-image's
# rgb2lab / rgb2hed compute them (equal within 1e-4), in float32 with per-channel lookup tables
# for the uint8 input: several times faster than the float64 originals.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_N = ((_RGB_TO_XYZ / _D65[:, None]).T).astype(np.float32)
_HED_FROM_RGB = np.linalg.inv(np.array([[0.65, 0.70, 0.29],
                                        [0.07, 0.99, 0.11],
                                        [0.27, 0.57, 0.78]]))[:, :2].astype(np.float32)
_LEVELS = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_LEVELS > 0.04045, ((_LEVELS + 0.055) / 1.055) ** 2.4,
                   _LEVELS / 12.92).astype(np.float32)
_OPTICAL = (np.log(np.maximum(_LEVELS, 1e-6)) / np.log(1e-6)).astype(np.float32)


def pixel_colour(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour/stain channels (H, W, 5): L, a, b scaled to ~[-1, 1], H and E stains."""
    image = np.asarray(image, dtype=np.uint8)
    out = np.empty((*image.shape[:2], 5), np.float32)
    f = _LINEAR[image] @ _XYZ_N
    dark = f <= 0.008856
    np.cbrt(f, out=f)
    if dark.any():  # the linear segment of Lab near black
        f[dark] = 7.787 * (f[dark] ** 3) + 16.0 / 116.0
    out[..., 0] = f[..., 1] * (116.0 / 50.0) - (16.0 / 50.0 + 1.0)
    out[..., 1] = (f[..., 0] - f[..., 1]) * (500.0 / 64.0)
    out[..., 2] = (f[..., 1] - f[..., 2]) * (200.0 / 64.0)
    out[..., 3:5] = np.maximum(_OPTICAL[image] @ _HED_FROM_RGB, 0.0) * 10.0
    return out


def patch_colour(image: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                 ) -> np.ndarray:
    """Colour features per patch (gh, gw, 10): mean and standard deviation of `pixel_colour`."""
    pc = pixel_colour(image)
    mean = _block_mean(pc, grid_hw, patch_hw)
    sq = _block_mean(pc * pc, grid_hw, patch_hw)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return np.concatenate([mean, std], axis=-1)
