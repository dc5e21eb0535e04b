"""run_slide(): slide → tissue → tile grid → Dask batches (SAT per tile) → stitch → outputs.

Every batch writes its tiles' cores straight into their own chunks of the level-0 label array and
its objects into one shard file (`<stem>.shards/batch_NNNNN.json`, written last and atomically):
a batch whose shard exists is done, which is what `--resume` skips. Final outputs are written
under temporary names and renamed into place, so an interrupted run never leaves a file that looks
complete.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch
from PIL import Image, ImageDraw
from skimage.measure import find_contours
from tqdm import tqdm

from wsi_sat.config import Config, config_to_dict
from wsi_sat.errors import ConfigError, WsiSatError
from wsi_sat.geometry import Scale
from wsi_sat.io.reference import Reference, rescale_reference
from wsi_sat.io.slide import Slide
from wsi_sat.runtime import (
    lane_threads,
    local_lanes,
    run_in_lanes,
    segmenter_for,
    worker_lanes,
)
from wsi_sat.sat.reference import ReferenceEmbedding
from wsi_sat.stitch.polygons import TileObject, merge_instances, merge_regions, tile_objects
from wsi_sat.tiling.batches import batch_slices
from wsi_sat.tiling.grid import Grid, Tile, make_grid, read_tile
from wsi_sat.tiling.select import select_tiles
from wsi_sat.tiling.tissue import TissueMasks, tile_mask, tissue_masks
from wsi_sat.writers.atomic import write_atomic
from wsi_sat.writers.geojson import feature_collection, write_geojson
from wsi_sat.writers.ome_zarr import build_pyramid, create_level0, open_level0, read_level
from wsi_sat.writers.provenance import versions, write_run_json

log = logging.getLogger(__name__)

LABEL_STRIDE = 1 << 16  # instance labels: tile index * 65536 + per-tile label


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    slide_mpp: float | None = None
    mpp: float | None = None  # working resolution; default: reference mpp, else slide mpp
    reference_mpp: float | None = None
    resume: bool = False
    max_batches: int | None = None  # stop after this many batches (testing resume)


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


@dataclass
class SlideSummary:
    slide: str
    tiles_grid: int
    tiles_tissue: int
    tiles_segmented: int
    objects: int
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)


def tile_encode_scale(seg: Any, config: Config) -> float:
    """Encoder px per working px for tiles; the reference is encoded at the same scale."""
    return float(seg.engine.input_px) / config.wsi.tile_px


def prepare_slide_references(seg: Any, refs: list[tuple[np.ndarray, np.ndarray, str]],
                             config: Config) -> tuple[ReferenceEmbedding,
                                                      ReferenceEmbedding | None]:
    """The reference for the tiles (encoded at the tiles' scale, cut into tile windows when
    larger) and, with coarse-to-fine on, the same reference at the coarse magnification
    (map mode: the coarse pass only matches); None when it is too small to be used there."""
    scale = tile_encode_scale(seg, config)
    tile_px = config.wsi.tile_px
    pairs = [(pair, name) for image, mask, name in refs
             for pair in reference_windows(image, mask, tile_px)]
    reference = seg.prepare_reference([p for p, _ in pairs], [n for _, n in pairs],
                                      encode_scale=scale)
    d = config.wsi.coarse_downsample
    if d <= 1:
        return reference, None
    try:
        small = [rescale_reference(Reference(name, image, mask, "coarse"), 1.0 / d)
                 for image, mask, name in refs]
        coarse = seg.prepare_reference([(r.image, r.mask) for r in small],
                                       [r.name for r in small], encode_scale=scale)
    except WsiSatError as err:
        log.warning("coarse-to-fine off: the reference is too small at 1/%d (%s)", d, err)
        return reference, None
    return reference, coarse.with_calibration(replace(coarse.calibration, mode="map",
                                                      use_pixel=False), None)


def reference_windows(image: np.ndarray, mask: np.ndarray, tile_px: int
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A reference larger than a tile, cut into tile-sized windows that hold both classes, so
    it is encoded at the tiles' scale; a reference that fits is returned whole."""
    h, w = mask.shape
    if h <= tile_px and w <= tile_px:
        return [(image, mask)]
    ys = np.unique(np.linspace(0, max(0, h - tile_px), max(1, -(-h // tile_px))).astype(int))
    xs = np.unique(np.linspace(0, max(0, w - tile_px), max(1, -(-w // tile_px))).astype(int))
    out = []
    for y in ys:
        for x in xs:
            m = mask[y : y + tile_px, x : x + tile_px]
            if 0.0 < m.mean() < 1.0:
                out.append((image[y : y + tile_px, x : x + tile_px], m))
    return out or [(image, mask)]


_SLIDES = threading.local()  # per lane: a slide handle is never read by two threads


def _slide_for(path: str, mpp: float) -> Slide:
    key = (path, mpp)
    cached: tuple[tuple[str, float], Slide] | None = getattr(_SLIDES, "open", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        cached = (key, Slide(Path(path), mpp))
        _SLIDES.open = cached
    return cached[1]


class BatchCancelled(RuntimeError):
    """A batch stopped before its end because the run is stopping (no shard written)."""


def segment_batch(task: BatchTask, reference: ReferenceEmbedding, tissue: TissueMasks,
                  cancel: threading.Event | None = None) -> dict[str, Any]:
    """One task (a lane in this process or a Dask task): read, segment and write a batch of
    tiles; returns stage timings. Self-training learns from tissue patches only; predictions
    farther than the tissue margin from tissue (glass, debris) are dropped. Once `cancel` is
    set the batch stops before its next tile and raises BatchCancelled without writing its
    shard (its tiles are redone by `--resume`)."""
    timings: dict[str, float] = defaultdict(float)
    t = time.perf_counter()
    # this lane's share of the worker's cores (OpenMP: set per thread)
    torch.set_num_threads(task.threads or lane_threads(task.config, worker_lanes() or 1))
    seg = segmenter_for(task.config)
    slide = _slide_for(task.slide_path, task.slide_mpp)
    scale = Scale(task.slide_mpp, task.working_mpp)
    timings["setup"] += time.perf_counter() - t
    tile_tissue = [tile_mask(tissue.tissue, tile, task.working_size) for tile in task.tiles]
    # a lazy generator: the segmenter's reader thread reads the next tiles while this batch's
    # are matched and decoded (prefetch; one thread, so a slide handle is never read
    # concurrently); `read` is the time the encoder waited for them
    def tiles() -> Iterator[np.ndarray]:
        for tile in task.tiles:
            if cancel is not None and cancel.is_set():
                raise BatchCancelled(f"batch {task.batch} stopped: the run is stopping")
            yield read_tile(slide, scale, tile, task.tile_px)

    results = seg.segment(tiles(), reference, mpp=task.working_mpp,
                          encode_scale=tile_encode_scale(seg, task.config), tissue=tile_tissue)
    level0 = open_level0(Path(task.zarr_path))
    objects: list[dict[str, Any]] = []
    for tile, res in zip(task.tiles, results):
        for stage, sec in res.timings_s.items():
            timings["read" if stage == "read_wait" else stage] += sec
        t = time.perf_counter()
        oy, ox = tile.core.y0 - tile.read.y0, tile.core.x0 - tile.read.x0
        core = np.s_[oy : oy + tile.core.height, ox : ox + tile.core.width]
        mask = res.mask[core] & tile_mask(tissue.keep, tile, task.working_size)[core]
        labels = None
        if task.instances and res.labels is not None:
            local = res.labels[core]
            labels = np.where(mask & (local > 0),
                              local.astype(np.int64) + tile.index * LABEL_STRIDE, 0)
        prob = res.prob[core] if res.prob is not None else mask.astype(np.float32)
        objs = tile_objects(mask, labels, prob, tile.index, (tile.core.x0, tile.core.y0),
                            scale.downsample, task.config.wsi.simplify_px)
        timings["polygons"] += time.perf_counter() - t
        t = time.perf_counter()
        block = labels.astype(np.uint32) if labels is not None else mask.astype(np.uint8)
        level0[tile.core.y0 : tile.core.y1, tile.core.x0 : tile.core.x1] = block
        timings["write"] += time.perf_counter() - t
        objects += [{"label": o.label, "tile": o.tile, "wkt": o.polygon.wkt, "score": o.score,
                     "area_px": o.area_px} for o in objs]
    shard = {"batch": task.batch, "tiles": [tile.index for tile in task.tiles],
             "objects": objects, "timings_s": dict(timings)}
    write_atomic(Path(task.shard_path), lambda p: p.write_text(json.dumps(shard)))
    return shard


def _load_shards(shard_dir: Path) -> tuple[list[TileObject], dict[str, float]]:
    objs, timings = [], defaultdict(float)
    for path in sorted(shard_dir.glob("batch_*.json")):
        shard = json.loads(path.read_text())
        for k, v in shard["timings_s"].items():
            timings[k] += v
        objs += [TileObject(o["label"], o["tile"], shapely.from_wkt(o["wkt"]), o["score"],
                            o["area_px"]) for o in shard["objects"]]
    return objs, dict(timings)


def _overview(path: Path, slide: Slide, tissue: np.ndarray, zarr_path: Path, levels: int,
              max_px: int = 1024) -> None:
    thumb, _ = slide.thumbnail(max_px)
    size = (thumb.shape[1], thumb.shape[0])
    level = levels - 1
    mask = read_level(zarr_path, level) > 0
    mask_img = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        size, Image.Resampling.NEAREST)) > 127
    tissue_img = np.asarray(Image.fromarray(tissue.astype(np.uint8) * 255).resize(
        size, Image.Resampling.NEAREST)) > 127
    out = thumb.astype(np.float32)
    out[mask_img] = 0.5 * out[mask_img] + 0.5 * np.array([0, 200, 80])
    img = Image.fromarray(out.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for contour in find_contours(tissue_img.astype(np.uint8), 0.5):
        draw.line([(float(c[1]), float(c[0])) for c in contour], fill=(30, 90, 255), width=2)
    write_atomic(path, lambda p: img.save(p, format="PNG"))


def plan_slide(slide: Slide, config: Config, options: RunOptions
               ) -> tuple[Scale, TissueMasks, Grid]:
    slide_mpp = slide.require_mpp()
    working_mpp = options.mpp or options.reference_mpp or slide_mpp
    scale = Scale(slide_mpp, working_mpp)
    wcfg = config.wsi
    if wcfg.overlap_px % 2 or wcfg.overlap_px >= wcfg.tile_px:
        raise ConfigError("wsi.overlap_px must be even and smaller than wsi.tile_px")
    thumb, downsample = slide.thumbnail(wcfg.thumbnail_px)
    thumb_mpp = slide_mpp * downsample
    tissue = tissue_masks(thumb, wcfg.tissue_margin_um / thumb_mpp,
                          wcfg.min_tissue_area_um2 / thumb_mpp**2)
    grid = make_grid(scale.working_size(*slide.dimensions), wcfg.tile_px, wcfg.overlap_px,
                     tissue.tissue, wcfg.min_tissue_fraction)
    return scale, tissue, grid


def run_slide(slide_path: Path, reference: ReferenceEmbedding, reference_info: dict[str, Any],
              config: Config, options: RunOptions, client: Any,
              model_info: dict[str, Any],
              coarse_reference: ReferenceEmbedding | None = None) -> SlideSummary:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slide = Slide(Path(slide_path), options.slide_mpp)
    stem = Path(slide_path).name.split(".")[0] if Path(slide_path).is_file() else Path(slide_path).name
    t = time.perf_counter()
    scale, tissue, grid = plan_slide(slide, config, options)
    timings["tissue"] = time.perf_counter() - t
    wcfg = config.wsi
    tiles = grid.tiles
    coarse_info: dict[str, Any] = {"enabled": False}
    if coarse_reference is not None and wcfg.coarse_downsample > 1 and tiles:
        seg = segmenter_for(config)
        sel = select_tiles(seg, coarse_reference, slide, scale, tissue, grid, wcfg,
                           tile_encode_scale(seg, config))
        tiles = sel.tiles
        timings["coarse"] = sel.seconds
        coarse_info = {"enabled": True, "downsample": wcfg.coarse_downsample,
                       "coarse_tiles": sel.coarse_tiles, "selected": len(tiles)}
    instances = reference.calibration.mode == "instances"
    partial = out / f"{stem}.ome.zarr.partial"
    final_zarr = out / f"{stem}.ome.zarr"
    shard_dir = out / f"{stem}.shards"
    if not options.resume:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True, exist_ok=True)
    create_level0(partial, grid.working_size, grid.stride, "uint32" if instances else "uint8")
    batches = [tiles[s] for s in batch_slices(len(tiles), wcfg.batch_tiles)]
    # in this process: lanes over this process's torch threads; Dask workers size their own
    lanes, threads = local_lanes(config) if client is None else (1, 0)
    tasks = [
        BatchTask(b, str(slide_path), scale.slide_mpp, scale.working_mpp, tuple(tiles),
                  wcfg.tile_px, grid.working_size, str(partial),
                  str(shard_dir / f"batch_{b:05d}.json"),
                  instances, config, threads)
        for b, tiles in enumerate(batches)
    ]
    pending = [task for task in tasks if not Path(task.shard_path).is_file()]
    if options.max_batches is not None:
        pending = pending[: options.max_batches]
    done_tiles = sum(len(t.tiles) for t in tasks) - sum(len(t.tiles) for t in pending)
    t = time.perf_counter()
    bar = tqdm(total=len(tiles), initial=done_tiles, unit="tile", desc=stem,
               disable=None, dynamic_ncols=True)
    if client is None:
        cores = torch.get_num_threads()
        cancel = threading.Event()  # set when this stops early: lanes stop at their next tile
        try:
            with closing(run_in_lanes(
                    lambda task: segment_batch(task, reference, tissue, cancel),
                    pending, lanes, cancel)) as shards:
                for shard in shards:
                    bar.update(len(shard["tiles"]))
        finally:
            torch.set_num_threads(cores)  # where the build's thread pool is process-wide
    else:
        from dask.distributed import as_completed

        ref_future = client.scatter(reference, broadcast=True)
        tissue_future = client.scatter(tissue, broadcast=True)
        futures = client.map(segment_batch, pending, reference=ref_future,
                             tissue=tissue_future, pure=False)
        for future in as_completed(futures):
            bar.update(len(future.result()["tiles"]))
    bar.close()
    timings["segment_wall"] = time.perf_counter() - t
    unfinished = [x for x in tasks if not Path(x.shard_path).is_file()]
    if unfinished:  # stopped early (max_batches): leave shards + partial zarr for --resume
        done = len(tiles) - sum(len(x.tiles) for x in unfinished)
        return SlideSummary(stem, grid.n_grid, len(grid.tiles), done, 0,
                            time.perf_counter() - t_start)
    t = time.perf_counter()
    objs, stage_sums = _load_shards(shard_dir)
    if instances:
        objs, mapping = merge_instances(objs)
    else:
        objs, mapping = merge_regions(objs), {}
    timings["merge"] = time.perf_counter() - t
    t = time.perf_counter()
    written = {(t.core.y0 // grid.stride, t.core.x0 // grid.stride) for t in tiles}
    levels = build_pyramid(partial, wcfg.pyramid_min_px, scale.working_mpp, stem, mapping,
                           written)
    shutil.rmtree(final_zarr, ignore_errors=True)
    partial.rename(final_zarr)
    timings["pyramid"] = time.perf_counter() - t
    t = time.perf_counter()
    collection = feature_collection(objs, "detection" if instances else "annotation",
                                    wcfg.class_name, wcfg.class_color, scale.slide_mpp)
    geojson_path = out / f"{stem}.geojson"
    write_geojson(geojson_path, collection)
    overview_path = out / f"{stem}.overview.png"
    _overview(overview_path, slide, tissue.tissue, final_zarr, levels)
    timings["write_outputs"] = time.perf_counter() - t
    for stage, sec in stage_sums.items():
        timings[f"tiles_{stage}"] = sec
    timings["total"] = time.perf_counter() - t_start
    record = {
        "slide": {"path": str(slide_path), "level0_size": list(slide.dimensions),
                  "mpp": scale.slide_mpp, "backend": slide.backend,
                  "mpp_source": "--slide-mpp" if options.slide_mpp else "metadata"},
        "working_mpp": scale.working_mpp,
        "tile_px": wcfg.tile_px,
        "overlap_px": wcfg.overlap_px,
        "tiles": {"grid": grid.n_grid, "tissue": len(grid.tiles),
                  "segmented": len(tiles), "batches": len(tasks), "coarse": coarse_info},
        "objects": len(objs),
        "object_type": "detection" if instances else "annotation",
        "zarr": {"path": str(final_zarr), "levels": levels,
                 "level0": "working resolution (working_mpp µm/px)"},
        "timings_s": timings,
        "reference": reference_info,
        "calibration": asdict(reference.calibration),
        "models": model_info,
        "config": config_to_dict(config),
        "versions": versions(),
    }
    run_json = out / f"{stem}.run.json"
    write_run_json(run_json, record)
    shutil.rmtree(shard_dir, ignore_errors=True)
    slide.close()
    return SlideSummary(stem, grid.n_grid, len(grid.tiles), len(tiles), len(objs),
                        timings["total"], {"zarr": str(final_zarr), "geojson": str(geojson_path),
                                           "run": str(run_json), "overview": str(overview_path)})

