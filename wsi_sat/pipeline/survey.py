"""The slide survey: before the tiles, a sample of the slide's tissue tiles is read and encoded on
the lanes; the method (`wsi_sat.sat.survey`) samples their tissue patches and makes the slide's
decision from them. The encodings are kept for the batches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsi_sat.encodings import TileEncodings
from wsi_sat.io.slide import Slide
from wsi_sat.models.sam import Encoded
from wsi_sat.pipeline.batch import read_tile
from wsi_sat.pipeline.plan import SlidePlan
from wsi_sat.runtime.lanes import lent_threads, run_in_lanes
from wsi_sat.runtime.progress import Progress
from wsi_sat.runtime.threads import torch_threads
from wsi_sat.sat import ReferenceEmbedding, SurveyPatches, decide_slide, survey_patches
from wsi_sat.segmenter import Segmenter
from wsi_sat.tiling.grid import Tile
from wsi_sat.tiling.tissue import tile_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Survey:
    embedding: ReferenceEmbedding  # the reference plus this slide's background
    info: dict[str, Any] = field(default_factory=dict)
    # the surveyed tiles' encoder outputs by tile index (kept when asked): the batches of this
    # process reuse them instead of encoding those tiles again
    encodings: dict[int, Encoded] = field(default_factory=dict)
    encoded: int = 0  # tiles the survey encoded
    reused: int = 0  # tiles it read back from the slide's store


def survey_tiles(tiles: list[Tile], n: int) -> list[Tile]:
    """`n` tiles spread evenly over the slide's tissue tiles (all of them when fewer)."""
    if len(tiles) <= n:
        return list(tiles)
    return [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, n).round()]


def survey_slide(slide: Slide, plan: SlidePlan, reference: ReferenceEmbedding,
                 segmenter: Segmenter, store: TileEncodings, threads: int = 0,
                 keep_encodings: bool = False, lanes: int = 1) -> Survey:
    """The reference with this slide's never-shown tissue as background and the slide's
    decision (unchanged when both are off or the slide has no tissue; no background added
    when the reference has no open threshold); with `keep_encodings`, the surveyed tiles'
    encoder outputs too. The tiles are encoded on `lanes` threads of `threads` each, or read
    back from the slide's `store`."""
    config = segmenter.config
    ocfg = config.sat.open_set
    if not (ocfg.enabled or ocfg.slide_decision) or not plan.tiles:
        return Survey(reference, {"enabled": False})
    t0 = time.perf_counter()
    chosen = survey_tiles(plan.tiles, config.wsi.survey_tiles)
    surveyed = {tile.index for tile in chosen}
    # the tiles the batches start with, encoded on the lanes while this thread clusters the
    # survey and fits the decision (the lanes would idle for it): one per lane, kept with the
    # survey's encodings for the batches to reuse
    ahead = [t for t in plan.tiles if t.index not in surveyed][:lanes] \
        if keep_encodings and lanes > 1 else []
    one_tile = _tile_surveyor(slide, plan, reference, segmenter, store, threads, surveyed,
                              max(1, ocfg.survey_patches // len(chosen)))
    with segmenter.blas_one_thread():
        results = run_in_lanes(one_tile, [*chosen, *ahead], lanes)
        try:
            done: dict[int, tuple[int, Encoded, SurveyPatches | None, bool]] = {}
            with Progress(f"{slide.path.name} survey", len(chosen), "tile") as progress:
                for r in results:  # until every surveyed tile is in (the tiles ahead go on)
                    done[r[0]] = r
                    progress.update(int(r[0] in surveyed))
                    if surveyed <= done.keys():
                        break
            log.info("%s survey: clustering %d tiles' patches and fitting the slide's decision",
                     slide.path.name, len(chosen))
            with lent_threads(min(lanes, ocfg.restarts), "wsi-sat-survey") as workers:
                embedding, info = decide_slide(reference, [done[t.index][2] for t in chosen],
                                               config.sat, workers)
            info["seconds"] = time.perf_counter() - t0
            for r in results:  # the tiles ahead
                done[r[0]] = r
        finally:
            results.close()
    encodings = {i: r[1] for i, r in done.items()} if keep_encodings else {}
    fresh = sum(r[3] for r in done.values())
    return Survey(embedding, info, encodings, fresh, len(done) - fresh)


def _tile_surveyor(slide: Slide, plan: SlidePlan, reference: ReferenceEmbedding,
                   segmenter: Segmenter, store: TileEncodings, threads: int, surveyed: set[int],
                   per_tile: int
                   ) -> Callable[[Tile], tuple[int, Encoded, SurveyPatches | None, bool]]:
    """What a lane does with one tile: read it (one lane at a time: a slide handle is never
    read by two threads, and reads overlap the other lane's encoder), encode it (or read its
    encoding back from the store) and, when it is surveyed, sample and match its tissue
    patches (each tile with its own seed: any order). The last field: whether it was encoded."""
    config = segmenter.config
    read_lock = threading.Lock()
    scale = segmenter.tile_scale(config.wsi.tile_px)

    def one_tile(tile: Tile) -> tuple[int, Encoded, SurveyPatches | None, bool]:
        enc = store.get(tile.index, segmenter.engine.device)
        fresh = enc is None
        if tile.index not in surveyed and enc is not None:  # a tile ahead, already encoded
            return tile.index, enc, None, fresh
        with read_lock:
            image = read_tile(slide, plan.scale, tile, config.wsi.tile_px)
        with torch_threads(threads):  # OpenMP: per thread, so per lane
            if enc is None:
                enc = store.keep(tile.index, segmenter.engine.encode([image], scale)[0])
            if tile.index not in surveyed:  # a tile ahead: its encoding only
                return tile.index, enc, None, fresh
            grid = segmenter.backbone.grids([image], [enc])[0]
            tissue = tile_mask(plan.tissue.tissue, tile, plan.grid.working_size)
            return tile.index, enc, survey_patches(reference, image, grid, tissue, config.sat,
                                                   per_tile, tile.index), fresh

    return one_tile
