"""One batch of tiles (a lane in this process or a Dask task): read, segment, write.

A batch writes its tiles' cores straight into their own chunks of the level-0 label array and
its objects into one shard file (written last and atomically): a batch whose shard exists is
done, which is what `--resume` skips.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch

from wsi_sat.config import Config
from wsi_sat.encodings import TileEncodings
from wsi_sat.errors import SlideReadError
from wsi_sat.geometry import Scale
from wsi_sat.io.slide import Slide
from wsi_sat.models.sam import Encoded
from wsi_sat.runtime.heap import frozen_heap
from wsi_sat.runtime.lanes import lane_threads, worker_lanes
from wsi_sat.runtime.models import worker_segmenter
from wsi_sat.runtime.threads import torch_threads
from wsi_sat.sat import ReferenceEmbedding, SegmentResult, keep_on_tissue, stains
from wsi_sat.segmenter import Segmenter
from wsi_sat.stitch.labels import object_sums, slide_instance_ids, write_tile_core
from wsi_sat.stitch.polygons import tile_objects
from wsi_sat.tiling.grid import Tile
from wsi_sat.tiling.tissue import TissueMasks, tile_mask
from wsi_sat.writers.atomic import write_atomic
from wsi_sat.writers.ome_zarr import open_level0


@dataclass(frozen=True, kw_only=True)
class BatchTask:
    """One batch of tiles of a slide: what a lane or a Dask worker needs to segment it and write
    its label chunks (`zarr_path`, level 0) and its shard (`shard_path`, last)."""

    batch: int
    tiles: tuple[Tile, ...]
    slide_path: str
    scale: Scale
    working_size: tuple[int, int]  # the slide at the working resolution (w, h)
    zarr_path: str
    shard_path: str
    instances: bool
    label_dtype: str
    config: Config  # a Dask worker loads its models from it
    encodings: TileEncodings  # the slide's tile encodings (kept, or only rounded)
    threads: int = 0  # torch CPU threads of the lane that runs it; 0 = the worker's share
    run_key: str = ""


class BatchCancelled(RuntimeError):
    """A batch stopped before its end because the run is stopping (no shard written)."""


def read_tile(slide: Slide, scale: Scale, tile: Tile, tile_px: int) -> np.ndarray:
    """A tile's read box (working pixels) as a (tile_px, tile_px) RGB array; outside the
    slide is white."""
    x, y, w, h = scale.to_level0(tile.read)
    try:
        return slide.read_padded(x, y, w, h, (tile_px, tile_px))
    except SlideReadError as exc:
        raise SlideReadError(f"tile {tile.index} (row {tile.row}, column {tile.col}): {exc}; "
                             "the finished batches are kept for --resume") from None


def segment_batch(task: BatchTask, reference: ReferenceEmbedding, tissue: TissueMasks,
                  cancel: threading.Event | None = None, segmenter: Segmenter | None = None,
                  encodings: dict[int, Encoded] | None = None) -> dict[str, Any]:
    """Read, segment and write a batch of tiles; returns its shard. Predictions are kept where
    target predicted on tissue-coloured patches anchors them (glass is never the target on
    its own: see wsi_sat.sat.keep_on_tissue) and within the tissue margin. `segmenter` None:
    this worker's cached models. Once `cancel` is set the batch stops before its next tile and
    raises BatchCancelled without writing its shard (its tiles are redone by `--resume`).
    `encodings` (tile index → encoder output, the survey's) are used instead of encoding those
    tiles again."""
    t = time.perf_counter()
    # this lane's share of the worker's cores (OpenMP: set per thread)
    threads = task.threads or lane_threads(task.config.runtime, worker_lanes() or 1)
    # frozen_heap: a Dask worker's models out of the garbage collector's full collections
    # (in this process the run has frozen them already: wsi_sat.runtime.heap)
    with torch_threads(threads), Slide(Path(task.slide_path), task.scale.slide_mpp) as slide, \
            frozen_heap():
        seg = segmenter if segmenter is not None else worker_segmenter(task.config)
        setup_s = time.perf_counter() - t
        work = _TileWork(task, slide, tissue, cancel)
        # on an accelerator tiles are finished on the lane's CPU threads while the device
        # encodes the next ones; on a CPU each tile right after its SAT
        finished = seg.segment_each(work.images(), reference, work.finish,
                                    mpp=task.scale.working_mpp,
                                    encode_scale=seg.tile_scale(task.config.wsi.tile_px),
                                    tissue=work.tissue,
                                    encoded=work.known(encodings or {}, seg.engine.device),
                                    keep=work.keep)
    timings: dict[str, float] = defaultdict(float, setup=setup_s)
    objects: list[dict[str, Any]] = []
    for objs, spent in finished:
        objects += objs
        for stage, sec in spent.items():
            timings[stage] += sec
    shard = {"run_key": task.run_key, "batch": task.batch,
             "tiles": [tile.index for tile in task.tiles],
             "encodings": {"encoded": work.encoded, "reused": work.reused},
             "objects": objects, "timings_s": dict(timings)}
    write_atomic(Path(task.shard_path), lambda p: p.write_text(json.dumps(shard)))
    return shard


class _TileWork:
    """A batch's tiles: read lazily for the segmenter, then each one finished (its glass rule,
    polygons and label chunk) as its result comes."""

    def __init__(self, task: BatchTask, slide: Slide, tissue: TissueMasks,
                 cancel: threading.Event | None) -> None:
        self.task, self.slide, self.masks, self.cancel = task, slide, tissue, cancel
        self.tissue = [tile_mask(tissue.tissue, tile, task.working_size) for tile in task.tiles]
        self.read: list[np.ndarray | None] = []  # the tiles as read (for the glass rule)
        self.level0 = open_level0(Path(task.zarr_path))
        self.encoded = self.reused = 0  # tiles encoded here / read back from the store

    def known(self, survey: dict[int, Encoded], device: torch.device
              ) -> Iterator[Encoded | None]:
        """Each tile's encoding from the survey or the slide's store, else None (encode it);
        lazily, as the segmenter reaches the tile."""
        for tile in self.task.tiles:
            enc = survey.get(tile.index)
            if enc is None:
                enc = self.task.encodings.get(tile.index, device)
                self.reused += enc is not None
            yield enc

    def keep(self, i: int, enc: Encoded) -> Encoded:
        """Tile i's fresh encoding, kept in the slide's store (as the method uses it)."""
        self.encoded += 1
        return self.task.encodings.keep(self.task.tiles[i].index, enc)

    def images(self) -> Iterator[np.ndarray]:
        """A lazy generator: the segmenter's reader thread reads the next tiles while this
        batch's are matched and decoded (one thread, so the slide handle is never read
        concurrently)."""
        for tile in self.task.tiles:
            if self.cancel is not None and self.cancel.is_set():
                raise BatchCancelled(f"batch {self.task.batch} stopped: the run is stopping")
            self.read.append(read_tile(self.slide, self.task.scale, tile,
                                       self.task.config.wsi.tile_px))
            yield self.read[-1]

    def finish(self, i: int, res: SegmentResult) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Tile i's glass rule, polygons and label chunk (each tile writes its own chunk)."""
        task, tile = self.task, self.task.tiles[i]
        spent = dict(res.timings_s)
        t = time.perf_counter()
        core = tile.core_in_read
        mask = keep_on_tissue(res.mask, self.read[i], self.tissue[i],
                              tile_mask(self.masks.keep, tile, task.working_size),
                              self.masks.glass_rgb, res.patch_hw, task.config.wsi,
                              task.scale)[core]
        ids, sums = None, None
        if task.instances and res.labels is not None:
            ids = slide_instance_ids(mask, res.labels[core], tile)
            pixels = self.read[i][core]
            sums = object_sums(ids, np.concatenate([pixels, stains(pixels)], axis=-1))
        prob = res.prob[core] if res.prob is not None else mask.astype(np.float32)
        objs = tile_objects(mask, ids, prob, tile.index, (tile.core.x0, tile.core.y0),
                            task.scale, task.config.wsi.simplify_px, sums)
        spent["polygons"] = time.perf_counter() - t
        t = time.perf_counter()
        write_tile_core(self.level0, tile, mask, ids, task.label_dtype)
        spent["write"] = time.perf_counter() - t
        self.read[i] = None  # the pixels are no longer needed
        # polygons as hex WKB: exact, and written and read back in one call each
        wkb = shapely.to_wkb(np.asarray([o.polygon for o in objs], dtype=object),
                             hex=True).tolist()
        return [{"label": o.label, "tile": o.tile, "wkb": w, "score": o.score,
                 "area_px": o.area_px,
                 **({"sums": o.sums.tolist()} if o.sums is not None else {})}
                for o, w in zip(objs, wkb)], spent
