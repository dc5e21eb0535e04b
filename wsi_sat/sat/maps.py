"""Patch-grid maps ↔ pixel maps (bilinear, patch centres aligned, cropped to the image)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample(grid_map: np.ndarray, patch_hw: tuple[float, float], image_hw: tuple[int, int]
             ) -> np.ndarray:
    """(gh, gw) values at patch centres → (H, W) by bilinear interpolation."""
    gh, gw = grid_map.shape
    full = (max(image_hw[0], round(gh * patch_hw[0])), max(image_hw[1], round(gw * patch_hw[1])))
    t = torch.from_numpy(np.ascontiguousarray(grid_map, dtype=np.float32))[None, None]
    t = F.interpolate(t, full, mode="bilinear", align_corners=False)
    return t[0, 0, : image_hw[0], : image_hw[1]].numpy()
