"""OpenCV morphology equals scipy.ndimage / scikit-image (what tissue detection and mask
clean-up were written against), borders included."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import remove_small_objects

from wsi_sat.morphology import (
    closing,
    component_sizes,
    fill_holes,
    grow,
    label_components,
    large_components,
)


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
    # 76800 one-pixel components: more than 16-bit labels hold (the 32-bit fallback)
    yield np.indices((256, 600)).sum(0) % 2 == 0


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


@pytest.mark.parametrize("mask", list(_masks()))
def test_labels_and_sizes_equal_scipy_whichever_label_width(mask):
    for connectivity, structure in ((4, None), (8, np.ones((3, 3), bool))):
        n, labels = label_components(mask.view(np.uint8), connectivity)
        want, n_want = ndimage.label(mask, structure)
        assert n == n_want + 1
        # the same partition (label numbers may differ): each label maps to exactly one
        pairs = np.unique(np.stack([labels.ravel(), want.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(labels)) == len(np.unique(want))
        assert np.array_equal(component_sizes(n, labels),
                              np.bincount(labels.ravel().astype(np.int64), minlength=n))
    if mask.sum() > 65535:
        assert label_components(mask.view(np.uint8), 4)[1].dtype == np.int32
