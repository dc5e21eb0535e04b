"""The tile grid at the working resolution (boxes only: no pixels are read here).

Tile cores lie on a regular lattice of `stride = tile_px - overlap_px` working pixels; each tile
is its core plus a halo of `overlap_px / 2` on every side, so each tile contributes exactly its core
to the stitched result (the overlap is split half-half between neighbours) and each core is one
chunk of the output label array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsi_sat.geometry import Box, box_fraction


@dataclass(frozen=True)
class Tile:
    index: int  # row-major index in the full lattice (stable across runs: used for labels)
    row: int
    col: int
    core: Box  # working pixels
    read: Box  # working pixels (may extend past the slide: read as white)

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """The core's slice in an array of the read box (tile pixels)."""
        return self.core.slice_within(self.read)


@dataclass(frozen=True)
class Grid:
    working_size: tuple[int, int]  # (w, h) working pixels
    stride: int
    halo: int
    shape: tuple[int, int]  # lattice (rows, cols)
    tiles: list[Tile]  # tiles that touch tissue

    @property
    def n_grid(self) -> int:
        return self.shape[0] * self.shape[1]


def make_grid(working_size: tuple[int, int], tile_px: int, overlap_px: int,
              tissue: np.ndarray | None = None, min_tissue_fraction: float = 0.0) -> Grid:
    """Tiles whose core holds more than `min_tissue_fraction` tissue (`tissue` is a mask
    covering the whole slide at any resolution; None keeps every tile)."""
    if overlap_px % 2 or overlap_px >= tile_px:
        raise ValueError("overlap_px must be even and smaller than tile_px")
    w, h = working_size
    stride = tile_px - overlap_px
    halo = overlap_px // 2
    rows, cols = math.ceil(h / stride), math.ceil(w / stride)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            core = Box(c * stride, r * stride, min(w, (c + 1) * stride), min(h, (r + 1) * stride))
            if tissue is not None and box_fraction(tissue, core, (w, h)) <= min_tissue_fraction:
                continue
            read = Box(core.x0 - halo, core.y0 - halo, core.x0 - halo + tile_px,
                       core.y0 - halo + tile_px)
            tiles.append(Tile(r * cols + c, r, c, core, read))
    return Grid((w, h), stride, halo, (rows, cols), tiles)
