"""Mask clean-up equals scikit-image's remove_small_objects / remove_small_holes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.morphology import remove_small_holes, remove_small_objects

from wsi_sat.config import PostprocessConfig
from wsi_sat.sat.postprocess import clean_mask


def _skimage(mask: np.ndarray, area: int) -> np.ndarray:
    if "max_size" in inspect.signature(remove_small_objects).parameters:
        out = remove_small_objects(mask, max_size=area - 1)
        return remove_small_holes(out, max_size=area - 1)
    out = remove_small_objects(mask, min_size=area)
    return remove_small_holes(out, area_threshold=area)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_mask_equals_scikit_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = gaussian_filter(rng.normal(size=(200, 300)), 2.0) > 0.05
    mask[0:3, 0:3] = True  # a small object on the border
    got = clean_mask(mask, PostprocessConfig(min_area_px=40, fill_holes=True))
    assert got.dtype == bool and (got != mask).any()
    assert np.array_equal(got, _skimage(mask, 40))


def test_clean_mask_in_square_micrometres() -> None:
    mask = np.zeros((50, 50), bool)
    mask[10:14, 10:14] = True  # 16 px = 4 µm² at 0.5 µm/px
    cfg = PostprocessConfig(min_area_px=1, min_area_um2=5.0)
    assert not clean_mask(mask, cfg, mpp=0.5).any()
    assert clean_mask(mask, cfg, mpp=None).sum() == 16
