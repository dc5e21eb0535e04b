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

from wsi_sat.config import Config
from wsi_sat.errors import SlideReadError
from wsi_sat.geometry import Scale
from wsi_sat.io.slide import Slide
from wsi_sat.models.sam import Encoded
from wsi_sat.runtime.heap import frozen_heap
from wsi_sat.runtime.lanes import lane_threads, worker_lanes
from wsi_sat.runtime.models import worker_segmenter
from wsi_sat.runtime.threads import torch_threads
from wsi_sat.sat.glass import keep_on_tissue
from wsi_sat.sat.reference import ReferenceEmbedding
from wsi_sat.segmenter import Segmenter, SegmentResult
from wsi_sat.stitch.polygons import tile_objects
from wsi_sat.tiling.grid import Tile
from wsi_sat.tiling.tissue import TissueMasks, tile_mask
from wsi_sat.writers.atomic import write_atomic
from wsi_sat.writers.ome_zarr import open_level0

# instance labels: tile index * LABEL_STRIDE + the tile's own label (< max_instances + 1)
LABEL_STRIDE = 1 << 16


def instance_label_dtype(n_grid: int) -> str:
    """The label dtype that holds every instance id of a grid of `n_grid` tiles."""
    return "uint32" if n_grid * LABEL_STRIDE < 2**32 else "uint64"


@dataclass(frozen=True)
class BatchTask:
    batch: int
    slide_path: str
    slide_mpp: float
    working_mpp: float
    tiles: tuple[Tile, ...]
    tile_px: int
    working_size: tuple[int, int]
    zarr_path: str
    shard_path: str
    instances: bool
    config: Config
    threads: int = 0  # torch CPU threads of the lane that runs it; 0 = the worker's share
    label_dtype: str = "uint32"
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
    its own: see wsi_sat.sat.glass) and within the tissue margin. `segmenter` None: this
    worker's cached models. Once `cancel` is set the batch stops before its next tile and
    raises BatchCancelled without writing its shard (its tiles are redone by `--resume`).
    `encodings` (tile index → encoder output, the survey's) are used instead of encoding those
    tiles again."""
    timings: dict[str, float] = defaultdict(float)
    t = time.perf_counter()
    # this lane's share of the worker's cores (OpenMP: set per thread)
    threads = task.threads or lane_threads(task.config, worker_lanes() or 1)
    # frozen_heap: a Dask worker's models out of the garbage collector's full collections
    # (in this process the run has frozen them already: wsi_sat.runtime.heap)
    with torch_threads(threads), Slide(Path(task.slide_path), task.slide_mpp) as slide, \
            frozen_heap():
        seg = segmenter if segmenter is not None else worker_segmenter(task.config)
        scale = Scale(task.slide_mpp, task.working_mpp)
        timings["setup"] += time.perf_counter() - t
        tile_tissue = [tile_mask(tissue.tissue, tile, task.working_size) for tile in task.tiles]

        images: list[np.ndarray | None] = []  # the tiles as read (for the glass rule)

        # a lazy generator: the segmenter's reader thread reads the next tiles while this
        # batch's are matched and decoded (prefetch; one thread, so the slide handle is never
        # read concurrently); `read` is the time the encoder waited for them
        def tiles() -> Iterator[np.ndarray]:
            for tile in task.tiles:
                if cancel is not None and cancel.is_set():
                    raise BatchCancelled(f"batch {task.batch} stopped: the run is stopping")
                images.append(read_tile(slide, scale, tile, task.tile_px))
                yield images[-1]

        level0 = open_level0(Path(task.zarr_path))

        def finish(i: int, res: SegmentResult) -> tuple[list[dict[str, Any]], dict[str, float]]:
            """Tile i's glass rule, polygons and label chunk (each tile writes its own chunk)."""
            tile = task.tiles[i]
            spent = dict(res.timings_s)
            t = time.perf_counter()
            core = tile.core_in_read
            mask = keep_on_tissue(res.mask, images[i], tile_tissue[i],
                                  tile_mask(tissue.keep, tile, task.working_size),
                                  tissue.glass_rgb, res.patch_hw, task.config.wsi,
                                  task.working_mpp)[core]
            labels = None
            if task.instances and res.labels is not None:
                local = res.labels[core]
                labels = np.where(mask & (local > 0),
                                  local.astype(np.int64) + tile.index * LABEL_STRIDE, 0)
            prob = res.prob[core] if res.prob is not None else mask.astype(np.float32)
            objs = tile_objects(mask, labels, prob, tile.index, (tile.core.x0, tile.core.y0),
                                scale, task.config.wsi.simplify_px)
            spent["polygons"] = time.perf_counter() - t
            t = time.perf_counter()
            block = labels.astype(task.label_dtype) if labels is not None else \
                mask.astype(np.uint8)
            level0[tile.core.y0 : tile.core.y1, tile.core.x0 : tile.core.x1] = block
            spent["write"] = time.perf_counter() - t
            images[i] = None  # the pixels are no longer needed
            # polygons as hex WKB: exact, and written and read back ~10x faster than WKT
            wkb = shapely.to_wkb(np.asarray([o.polygon for o in objs], dtype=object),
                                 hex=True).tolist()
            return [{"label": o.label, "tile": o.tile, "wkb": w, "score": o.score,
                     "area_px": o.area_px} for o, w in zip(objs, wkb)], spent

        # on an accelerator tiles are finished on the lane's CPU threads while the device
        # encodes the next ones; on a CPU each tile right after its SAT
        finished = seg.segment_each(tiles(), reference, finish, mpp=task.working_mpp,
                                    encode_scale=float(seg.engine.input_px) / task.tile_px,
                                    tissue=tile_tissue,
                                    encoded=[(encodings or {}).get(t.index)
                                             for t in task.tiles])
    objects: list[dict[str, Any]] = []
    for objs, spent in finished:
        objects += objs
        for stage, sec in spent.items():
            timings[stage] += sec
    shard = {"run_key": task.run_key, "batch": task.batch,
             "tiles": [tile.index for tile in task.tiles],
             "objects": objects, "timings_s": dict(timings)}
    write_atomic(Path(task.shard_path), lambda p: p.write_text(json.dumps(shard)))
    return shard

