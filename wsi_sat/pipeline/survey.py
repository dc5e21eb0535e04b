"""The slide survey: before the tiles, a sample of the slide's tissue tiles is encoded and its
tissue patches matched against the reference; clusters of tissue the reference never showed
join the bank as background for this slide, and the slide's decision is fitted on the bank and
the survey (see wsi_sat.sat.open_set)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wsi_sat.config import Config
from wsi_sat.io.slide import Slide
from wsi_sat.models.sam import Encoded
from wsi_sat.pipeline.batch import read_tile
from wsi_sat.pipeline.plan import SlidePlan
from wsi_sat.runtime.lanes import run_in_lanes
from wsi_sat.runtime.threads import torch_threads
from wsi_sat.sat.matching import match
from wsi_sat.sat.open_set import slide_background, slide_decision, with_background
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.reference import ReferenceEmbedding
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


def survey_tiles(tiles: list[Tile], n: int) -> list[Tile]:
    """`n` tiles spread evenly over the slide's tissue tiles (all of them when fewer)."""
    if len(tiles) <= n:
        return list(tiles)
    return [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, n).round()]


def survey_slide(slide: Slide, plan: SlidePlan, reference: ReferenceEmbedding,
                 segmenter: Segmenter, config: Config, threads: int = 0,
                 keep_encodings: bool = False, lanes: int = 1) -> Survey:
    """The reference with this slide's never-shown tissue as background and the slide's
    decision (unchanged when both are off or the slide has no tissue; no background added
    when the reference has no open threshold); with `keep_encodings`, the surveyed tiles'
    encoder outputs too. The tiles are encoded on `lanes` threads of `threads` each."""
    ocfg = config.sat.open_set
    if not (ocfg.enabled or ocfg.slide_decision) or not plan.tiles:
        return Survey(reference, {"enabled": False})
    t0 = time.perf_counter()
    chosen = survey_tiles(plan.tiles, config.wsi.survey_tiles)
    per_tile = max(1, ocfg.survey_patches // len(chosen))
    scale = float(segmenter.engine.input_px) / config.wsi.tile_px
    # each lane reads its tile (one at a time: a slide handle is never read by two threads),
    # so reads overlap the other lane's encoder; then encodes and matches it; each tile
    # samples its patches with its own seed (any order)
    read_lock = threading.Lock()

    surveyed = {tile.index for tile in chosen}
    # the tiles the batches start with, encoded on the lanes while this thread clusters the
    # survey and fits the decision (the lanes would idle for it): one per lane, kept with the
    # survey's encodings for the batches to reuse
    ahead = [t for t in plan.tiles if t.index not in surveyed][:lanes] \
        if keep_encodings and lanes > 1 else []

    def one_tile(tile: Tile) -> tuple[int, Encoded, np.ndarray | None, np.ndarray | None,
                                      np.ndarray | None]:
        with read_lock:
            image = read_tile(slide, plan.scale, tile, config.wsi.tile_px)
        with torch_threads(threads):  # OpenMP: per thread, so per lane
            enc = segmenter.engine.encode([image], scale)[0]
            if tile.index not in surveyed:  # a tile ahead: its encoding only
                return tile.index, enc, None, None, None
            grid = segmenter.backbone.grids([image], [enc])[0]
            tissue = tile_mask(plan.tissue.tissue, tile, plan.grid.working_size)
            idx = np.nonzero(mask_fraction(tissue, grid.grid_hw, grid.patch_hw).ravel()
                             >= config.sat.matching.self_train_min_tissue)[0]
            if not len(idx):
                return tile.index, enc, None, None, None
            if len(idx) > per_tile:
                rng = np.random.default_rng((config.sat.seed, tile.index))
                idx = np.sort(rng.choice(idx, per_tile, replace=False))
            f = reference.features(grid, patch_colour(image, grid.grid_hw, grid.patch_hw))[idx]
            res = match(f, reference.bank, reference.labels, config.sat.matching.top_k,
                        votes=False)
            return tile.index, enc, f, res.fg_sim, res.margin

    with segmenter.blas_one_thread():
        results = run_in_lanes(one_tile, [*chosen, *ahead], lanes)
        try:
            done: dict[int, tuple[int, Encoded, Any, Any, Any]] = {}
            for r in results:  # until every surveyed tile is in (the tiles ahead go on)
                done[r[0]] = r
                if surveyed <= done.keys():
                    break
            rows = [done[tile.index] for tile in chosen]  # the survey's order
            embedding, info = _slide_embedding(reference, rows, config, lanes)
            info["seconds"] = time.perf_counter() - t0
            for r in results:  # the tiles ahead
                done[r[0]] = r
        finally:
            results.close()
    encodings = {i: r[1] for i, r in done.items()} if keep_encodings else {}
    return Survey(embedding, info, encodings)


def _slide_embedding(reference: ReferenceEmbedding, rows: list[tuple[int, Encoded, Any, Any,
                                                                      Any]],
                     config: Config, lanes: int) -> tuple[ReferenceEmbedding, dict[str, Any]]:
    """The reference with the slide's never-shown tissue as background and the slide's
    decision, from the surveyed tiles' (index, encoding, features, fg_sim, margin) rows."""
    ocfg = config.sat.open_set
    open_thr = reference.calibration.open_threshold
    feats = [f for _, _, f, _, _ in rows if f is not None]
    fg_sim = [s for _, _, f, s, _ in rows if f is not None]
    margin = [m for _, _, f, _, m in rows if f is not None]
    if not feats:
        return reference, {"enabled": True, "tiles": len(rows), "patches": 0}
    x = np.concatenate(feats)
    info: dict[str, Any] = {"enabled": True, "tiles": len(rows), "survey_patches": len(x),
                            "open_threshold": open_thr}
    embedding = reference
    if ocfg.enabled and open_thr is not None:
        picked, summary = slide_background(x, np.concatenate(fg_sim), np.concatenate(margin),
                                           reference.calibration.threshold, open_thr, ocfg,
                                           config.sat.seed, workers=lanes)
        embedding = with_background(reference, x[picked])
        info["background"] = summary
        log.info("survey: %d tiles, %d patches, %.1f of %d clusters never shown by the reference "
                 "(%.0f %% of the tissue), %d patches added as background", len(rows), len(x),
                 summary["novel_clusters"], summary["clusters"],
                 100 * summary.get("novel_fraction", 0.0), summary["patches"])
    if ocfg.slide_decision:
        against = match(x, embedding.bank, embedding.labels, config.sat.matching.top_k,
                        votes=False)
        decision, info["decision"] = slide_decision(embedding, x, against.margin,
                                                    config.sat.matching, config.sat.seed)
        embedding = replace(embedding, decision=decision)
    return embedding, info
