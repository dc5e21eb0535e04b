"""The reference bank's cap: a floor for every example, the rest in proportion."""

import numpy as np

from wsi_sat.sat.reference import _fair_share


def _share(counts, cap):
    owners = np.repeat(np.arange(len(counts)), counts)
    idx = np.arange(len(owners)) + 100  # indices need not start at 0
    sel = _fair_share(idx, owners, cap, np.random.default_rng(0))
    assert len(np.unique(sel)) == len(sel) and np.isin(sel, idx).all()
    return np.bincount(owners[sel - 100], minlength=len(counts))


def test_a_small_example_keeps_every_patch_and_the_large_ones_share_the_rest():
    assert _share([1000, 30, 500], 600).tolist() == [357, 30, 213]  # floor 100, then 900 : 400
    assert _share([1000, 30, 500], 5000).tolist() == [1000, 30, 500]  # under the cap: all
    assert _share([10, 10, 10], 2).sum() == 2  # fewer places than examples


def test_adding_an_example_never_takes_a_smaller_ones_patches():
    before = _share([4000, 120], 2000)
    after = _share([4000, 120, 60], 2000)
    assert before[1] == after[1] == 120 and after[2] == 60
    assert after.sum() == before.sum() == 2000
