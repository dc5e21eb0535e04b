"""Tiles → batches: every tile once, in order; full batches, then a tail of single tiles."""

import pytest

from wsi_sat.tiling.batches import TAIL_BATCHES, batch_slices


@pytest.mark.parametrize("n", [0, 1, 7, 16, 17, 24, 25, 132, 1000])
@pytest.mark.parametrize("batch_tiles", [1, 3, 8])
def test_batches_cover_every_tile_once_with_a_tail_of_singles(n, batch_tiles):
    slices = batch_slices(n, batch_tiles)
    covered = [i for s in slices for i in range(s.start, s.stop)]
    assert covered == list(range(n))
    sizes = [s.stop - s.start for s in slices]
    assert all(size in (1, batch_tiles) for size in sizes)
    singles = len(sizes) - sizes.index(1) if 1 in sizes else 0
    assert sizes[len(sizes) - singles:] == [1] * singles  # the singles are the tail
    assert singles >= min(n, TAIL_BATCHES * batch_tiles)
    assert singles < TAIL_BATCHES * batch_tiles + batch_tiles or batch_tiles == 1
    assert batch_slices(n, batch_tiles) == slices  # --resume finds the same plan
