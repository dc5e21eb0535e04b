"""Tiles → batches (one Dask task and one result shard each).

Full batches of `batch_tiles`, then a tail of single-tile batches: lanes and workers take
batches as they free up, so with a tail of singles they finish within about one tile of each
other instead of one lane running the last full batch alone while the others' cores idle. The
plan depends on the tile count and `wsi.batch_tiles` only, so `--resume` finds the same batches.
"""

from __future__ import annotations

TAIL_BATCHES = 2  # the last this many batches' worth of tiles go one per batch


def batch_slices(n_tiles: int, batch_tiles: int) -> list[slice]:
    """Slices of a tile list: full batches, then at least `TAIL_BATCHES * batch_tiles`
    (fewer when there are fewer tiles) single-tile batches."""
    batch_tiles = max(1, batch_tiles)
    full = max(0, n_tiles - TAIL_BATCHES * batch_tiles) // batch_tiles
    head = full * batch_tiles
    return ([slice(i, i + batch_tiles) for i in range(0, head, batch_tiles)]
            + [slice(i, i + 1) for i in range(head, n_tiles)])
