"""Per-patch quantities on a feature grid: mask coverage and colour / stain features.

A grid is given by its shape (gh, gw) and its patch size in original pixels (py, px); the last
row and column may cover the image only partly and are used like every other patch.
"""

from __future__ import annotations

import cv2
import numpy as np


def _block_mean(values: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                ) -> np.ndarray:
    """Mean of `values` (H, W, C) over each patch (gh, gw, C); patches clipped to the image."""
    h, w = values.shape[:2]
    gh, gw = grid_hw
    if _exact_grid((h, w), grid_hw, patch_hw):  # whole slides: OpenCV's area resize, same mean
        out = cv2.resize(values.astype(np.float32, copy=False), (gw, gh),
                         interpolation=cv2.INTER_AREA)
        return out.reshape(gh, gw, values.shape[2])
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


def _exact_grid(hw: tuple[int, int], grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                ) -> bool:
    """Whole patches of whole pixels tile the image exactly (then OpenCV's area resize is the
    block mean): whole-slide tiles, 1024 px in 16-px patches."""
    return all(g * p == n and float(p).is_integer() for n, g, p in zip(hw, grid_hw, patch_hw))


# sRGB → CIE Lab (D65) and Ruifrok–Johnston H&E(-DAB) deconvolution, as scikit-image's
# rgb2lab / rgb2hed compute them (equal within 1e-5), in float32: lookup tables for the uint8
# input (one table for all three channels: OpenCV's fast LUT path), OpenCV's colour-matrix
# kernel and numpy's vectorised cube root (correctly rounded, as scikit-image's; OpenCV's pow is
# not), on 3-channel arrays throughout — a fraction of float64 scikit-image's time per tile.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_N = (_RGB_TO_XYZ / _D65[:, None]).astype(np.float32)  # rows: X/Xn, Y/Yn, Z/Zn
# f(X), f(Y), f(Z) → L, a, b scaled to ~[-1, 1] (affine: the last column is the offset)
_LAB = np.array([[0.0, 116.0 / 50.0, 0.0, -(16.0 / 50.0 + 1.0)],
                 [500.0 / 64.0, -500.0 / 64.0, 0.0, 0.0],
                 [0.0, 200.0 / 64.0, -200.0 / 64.0, 0.0]], np.float32)
_HED = np.zeros((3, 3), np.float32)  # optical density → H, E (x10); third row unused (0)
_HED[:2] = np.linalg.inv(np.array([[0.65, 0.70, 0.29],
                                   [0.07, 0.99, 0.11],
                                   [0.27, 0.57, 0.78]]))[:, :2].T * 10.0
_LEVELS = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_LEVELS > 0.04045, ((_LEVELS + 0.055) / 1.055) ** 2.4,
                   _LEVELS / 12.92).astype(np.float32).reshape(1, 256, 1)
_OPTICAL = (np.log(np.maximum(_LEVELS, 1e-6)) / np.log(1e-6)).astype(np.float32
                                                                     ).reshape(1, 256, 1)
_LAB_KNEE = 0.008856  # below it (near black) Lab's f is linear


def _lab_hed(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) Lab scaled to ~[-1, 1] and (H, W, 3) H, E stains (x10) with a zero channel."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    xyz = cv2.transform(cv2.LUT(image, _LINEAR), _XYZ_N)
    dark = xyz <= _LAB_KNEE
    near_black = xyz[dark] if dark.any() else None
    f = np.cbrt(xyz, out=xyz)
    if near_black is not None:  # the linear segment of Lab near black
        f[dark] = 7.787 * near_black + 16.0 / 116.0
    lab = cv2.transform(f, _LAB)
    hed = cv2.max(cv2.transform(cv2.LUT(image, _OPTICAL), _HED), 0.0)
    return lab, hed


def stains(image: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 haematoxylin and eosin densities of an RGB image, as scikit-image's
    `rgb2hed` computes them (Ruifrok-Johnston colour deconvolution of the optical density)."""
    return _lab_hed(image)[1][..., :2] / 10.0


def pixel_colour(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour/stain channels (H, W, 5): L, a, b scaled to ~[-1, 1], H and E stains."""
    lab, hed = _lab_hed(image)
    return np.concatenate([lab, hed[..., :2]], axis=-1)


def patch_colour(image: np.ndarray, grid_hw: tuple[int, int], patch_hw: tuple[float, float]
                 ) -> np.ndarray:
    """Colour features per patch (gh, gw, 10): mean and standard deviation of `pixel_colour`."""
    stats = []
    for channels in _lab_hed(image):
        mean = _block_mean(channels, grid_hw, patch_hw)
        sq = _block_mean(np.square(channels, out=channels), grid_hw, patch_hw)  # its own array
        stats.append((mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))))
    (lab_m, lab_s), (hed_m, hed_s) = stats
    return np.concatenate([lab_m, hed_m[..., :2], lab_s, hed_s[..., :2]], axis=-1)
