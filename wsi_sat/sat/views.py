"""Geometric views of a reference (flip, rotate by 90°, rescale) for bank enrichment and
self-calibration. Masks are resampled with nearest neighbour, never interpolated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from wsi_sat.raster import resize_mask


@dataclass(frozen=True)
class View:
    """hflip, then rot90 `k` times (counter-clockwise), then rescale by `scale`."""

    name: str
    hflip: bool = False
    k: int = 0
    scale: float = 1.0
    original_hw: tuple[int, int] = (0, 0)

    @property
    def is_identity(self) -> bool:
        return not self.hflip and self.k % 4 == 0 and self.scale == 1.0

    def _resize(self, arr: np.ndarray, nearest: bool) -> np.ndarray:
        if self.scale == 1.0:
            return arr
        h, w = arr.shape[:2]
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
        if arr.dtype == bool:
            return resize_mask(arr, size)
        return np.asarray(Image.fromarray(arr).resize(size, resample))

    def apply(self, arr: np.ndarray, nearest: bool = False) -> np.ndarray:
        out = arr[:, ::-1] if self.hflip else arr
        out = np.rot90(out, self.k)
        return np.ascontiguousarray(self._resize(np.ascontiguousarray(out), nearest))

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map (N, 2) view pixel coordinates (x, y) back to original pixel coordinates."""
        h, w = self.original_hw
        pts = np.asarray(xy, dtype=np.float64) / self.scale
        # one CCW np.rot90 maps original (x, y) of an image of width W to (y, W - x);
        # undo the rotations last first
        for step in range(self.k % 4, 0, -1):
            width_before = w if (step - 1) % 2 == 0 else h
            pts = np.stack([width_before - pts[:, 1], pts[:, 0]], axis=1)
        if self.hflip:
            pts = np.stack([w - pts[:, 0], pts[:, 1]], axis=1)
        return pts


def standard_views(hw: tuple[int, int], augment: bool, scale: float) -> list[View]:
    """The original and, with `augment`, three copies that differ in geometry and scale (the
    last one rescaled by `scale`)."""
    views = [View("original", original_hw=hw)]
    if augment:
        views += [
            View("hflip", hflip=True, original_hw=hw),
            View("rot90", k=1, original_hw=hw),
            View(f"hflip-rot270-x{scale:g}", hflip=True, k=3, scale=scale, original_hw=hw),
        ]
    return views
