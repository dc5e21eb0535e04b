"""Tile results → the slide's level-0 label array: instance ids unique across the slide, each
tile's core written into its own chunks, and the ids of objects merged across tile borders
relabelled to one id (after all tiles, before the pyramid is built)."""

from __future__ import annotations

import numpy as np
import zarr

from wsi_sat.tiling.grid import Tile

# instance labels: tile index * LABEL_STRIDE + the tile's own label (< max_instances + 1)
LABEL_STRIDE = 1 << 16

Chunk = tuple[int, int]  # (row, column) index of a chunk


def instance_label_dtype(n_grid: int) -> str:
    """The label dtype that holds every instance id of a grid of `n_grid` tiles."""
    return "uint32" if n_grid * LABEL_STRIDE < 2**32 else "uint64"


def slide_instance_ids(core_mask: np.ndarray, core_labels: np.ndarray, tile: Tile
                       ) -> np.ndarray:
    """A tile's own instance labels (its core) as ids unique across the slide; 0 outside
    `core_mask`."""
    return np.where(core_mask & (core_labels > 0),
                    core_labels.astype(np.int64) + tile.index * LABEL_STRIDE, 0)


def write_tile_core(level0: zarr.Array, tile: Tile, core_mask: np.ndarray,
                    core_ids: np.ndarray | None, dtype: str) -> None:
    """The tile's core into its own chunks of the level-0 label array (no two tiles share a
    chunk): its instance ids, else the mask as 0/1."""
    block = core_ids.astype(dtype) if core_ids is not None else core_mask.astype(np.uint8)
    level0[tile.core.y0 : tile.core.y1, tile.core.x0 : tile.core.x1] = block


def relabel(level0: zarr.Array, mapping: dict[int, int], chunks: set[Chunk]) -> None:
    """Apply `mapping` (instance id → the id of the object it was merged into) to the given
    chunks of the level-0 label array."""
    if not mapping:
        return
    keys = np.array(sorted(mapping), dtype=np.int64)
    values = np.array([mapping[k] for k in keys], dtype=np.int64)
    ch, cw = level0.chunks
    for cy, cx in sorted(chunks):
        y, x = cy * ch, cx * cw
        block = level0[y : y + ch, x : x + cw]
        if not block.any():
            continue
        flat = block.astype(np.int64).ravel()
        idx = np.searchsorted(keys, flat)
        idx = np.clip(idx, 0, len(keys) - 1)
        hit = keys[idx] == flat
        flat[hit] = values[idx[hit]]
        level0[y : y + ch, x : x + cw] = flat.reshape(block.shape).astype(block.dtype)


def object_sums(ids: np.ndarray, channels: np.ndarray) -> dict[int, np.ndarray]:
    """Per object id (0 = none), the sums of each of `channels`' (H, W, C) values over its
    pixels: merged objects add them up, so their means are exact across tile borders."""
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.ravel()
    flat = channels.reshape(-1, channels.shape[-1]).astype(np.float64)
    sums = np.stack([np.bincount(inverse, weights=flat[:, c], minlength=len(values))
                     for c in range(flat.shape[1])], axis=1)
    return {int(v): sums[i] for i, v in enumerate(values) if v > 0}
