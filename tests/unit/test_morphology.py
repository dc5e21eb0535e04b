"""OpenCV morphology equals scipy.ndimage / scikit-image (what tissue detection and mask
clean-up were written against), borders included."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import remove_small_objects

from wsi_sat.morphology import closing, fill_holes, grow, large_components


def _masks():
    rng = np.random.default_rng(0)
    yield ndimage.uniform_filter(rng.random((301, 257)), size=9) > 0.5  # blobs, holes
    yield rng.random((64, 80)) > 0.6  # speckle: many 1-px pieces, touching every border
    yield np.zeros((20, 30), bool)
    yield np.ones((20, 30), bool)
    ring = np.zeros((50, 50), bool)
    ring[10:40, 10:40] = True
    ring[20:30, 20:30] = False  # an enclosed hole
    ring[0:5, 20:30] = True  # a piece on the border
    yield ring


@pytest.mark.parametrize("mask", list(_masks()))
def test_closing_fill_and_components_equal_scipy(mask):
    for n in (1, 2):
        assert np.array_equal(closing(mask, n), ndimage.binary_closing(mask, iterations=n))
    assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    for area in (1, 2, 10, 50):
        assert np.array_equal(large_components(mask, area),
                              remove_small_objects(mask, max_size=area - 1) if area > 1
                              else mask)


@pytest.mark.parametrize("mask", list(_masks()))
def test_grow_equals_the_exact_distance_transform(mask):
    if not mask.any():
        assert not grow(mask, 3.0).any()
        return
    for r in (0.0, 1.0, 2.5, 5.0, 7.0):
        want = ndimage.distance_transform_edt(~mask) <= r if r > 0 else mask
        assert np.array_equal(grow(mask, r), want)
