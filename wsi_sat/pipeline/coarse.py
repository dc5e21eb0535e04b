"""Coarse-to-fine tile selection: a matching-only pass at low magnification over the tissue
picks the tiles that can contain the target; only those reach the full-resolution encoder.

The coarse pass reads the slide at `wsi.coarse_downsample` x the working µm/px in tiles of the same pixel
size (each covers downsample² working tiles, so it costs about 1/downsample² of the fine pass),
matches them against the reference encoded at that magnification (map mode: no SAM decoding),
and keeps a working tile when the coarse foreground probability anywhere in its read box
(core + halo) reaches `wsi.coarse_min_prob`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from wsi_sat.config import WsiConfig
from wsi_sat.io.slide import Slide
from wsi_sat.pipeline.batch import read_tile
from wsi_sat.pipeline.plan import SlidePlan
from wsi_sat.sat import ReferenceEmbedding
from wsi_sat.segmenter import Segmenter
from wsi_sat.tiling.grid import Tile, make_grid
from wsi_sat.tiling.tissue import tile_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    tiles: list[Tile]
    coarse_tiles: int
    seconds: float


def select_tiles(seg: Segmenter, coarse_reference: ReferenceEmbedding, slide: Slide,
                 plan: SlidePlan, wcfg: WsiConfig) -> Selection:
    """The tiles of the plan's grid that the coarse pass (`wcfg.coarse_downsample`,
    `wcfg.coarse_min_prob`) finds the target in (or near)."""
    t0 = time.perf_counter()
    scale, tissue, grid = plan.scale, plan.tissue, plan.grid
    encode_scale = seg.tile_scale(wcfg.tile_px)
    downsample, tile_px, batch_tiles = wcfg.coarse_downsample, wcfg.tile_px, wcfg.batch_tiles
    coarse = scale.coarser(downsample)
    cgrid = make_grid(coarse.working_size(*slide.dimensions), tile_px, wcfg.overlap_px,
                      tissue.tissue)
    hits: set[int] = set()  # lattice indices of working tiles whose read box holds a hit
    rows, cols = grid.shape
    reach = grid.halo + downsample  # a hit counts for every tile whose read box it touches
    for i in range(0, len(cgrid.tiles), batch_tiles):
        ctiles = cgrid.tiles[i : i + batch_tiles]
        images = [read_tile(slide, coarse, t, tile_px) for t in ctiles]
        masks = [tile_mask(tissue.tissue, t, cgrid.working_size) for t in ctiles]
        results = seg.segment(images, coarse_reference, mpp=coarse.working_mpp,
                              encode_scale=encode_scale, tissue=masks)
        for ctile, res in zip(ctiles, results):
            core = ctile.core_in_read
            keep_mask = tile_mask(tissue.keep, ctile, cgrid.working_size)[core]
            ys, xs = np.nonzero((res.prob[core] >= wcfg.coarse_min_prob) & keep_mask)
            if not len(ys):
                continue
            wx = (xs + ctile.core.x0 + 0.5) * downsample  # coarse pixels → working pixels
            wy = (ys + ctile.core.y0 + 0.5) * downsample
            for dy in (-reach, 0, reach):
                for dx in (-reach, 0, reach):
                    r = np.clip(((wy + dy) // grid.stride).astype(int), 0, rows - 1)
                    c = np.clip(((wx + dx) // grid.stride).astype(int), 0, cols - 1)
                    hits.update(np.unique(r * cols + c).tolist())
    tiles = [t for t in grid.tiles if t.index in hits]
    seconds = time.perf_counter() - t0
    log.info("coarse pass: %d coarse tiles, %d of %d tiles selected in %.1fs",
             len(cgrid.tiles), len(tiles), len(grid.tiles), seconds)
    return Selection(tiles, len(cgrid.tiles), seconds)
