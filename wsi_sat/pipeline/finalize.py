"""After the batches: merge the shards' objects across tile borders, build the label pyramid,
write the GeoJSON, the overview and run.json (each to a temporary name, renamed into place; the
Zarr store is built as `.partial` and renamed), then drop the shards."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from wsi_sat.config import WsiConfig
from wsi_sat.geometry import Scale, level0_to_qupath
from wsi_sat.io.slide import Slide
from wsi_sat.pipeline.advice import slide_warnings
from wsi_sat.pipeline.plan import OutputPaths, SlidePlan
from wsi_sat.runtime.cpu import CpuAccount
from wsi_sat.stitch.labels import relabel
from wsi_sat.stitch.polygons import TileObject, merge_instances, merge_regions, tile_objects
from wsi_sat.tiling.grid import Tile
from wsi_sat.writers.geojson import feature_collection, tissue_collection, write_geojson
from wsi_sat.writers.ome_zarr import (
    LabelInfo,
    build_pyramid,
    finest_level_within,
    open_level0,
    read_level,
)
from wsi_sat.writers.overview import Legend, write_overview
from wsi_sat.writers.manifest import build_manifest, sign_record, write_manifest
from wsi_sat.writers.provenance import utc_now, write_run_json
from wsi_sat.writers.tables import objects_table, write_objects

log = logging.getLogger(__name__)
progress = logging.getLogger("wsi_sat.progress")  # runtime/progress.py: shown by default


@dataclass
class SlideSummary:
    slide: str
    tiles_grid: int
    tiles_tissue: int
    tiles_segmented: int
    objects: int
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    skipped: bool = False  # complete from an earlier run with the same inputs (--resume)


def load_shards(shard_dir: Path) -> tuple[list[TileObject], dict[str, float], dict[str, int]]:
    """Every shard's objects (in batch order), the summed stage timings and the tiles whose
    encodings the batches computed (`encoded`) or read back (`reused`)."""
    records, timings = [], defaultdict(float)
    encodings = {"encoded": 0, "reused": 0}
    for path in sorted(shard_dir.glob("batch_*.json")):
        shard = json.loads(path.read_text())
        for k, v in shard["timings_s"].items():
            timings[k] += v
        for k, v in shard.get("encodings", {}).items():
            encodings[k] += v
        records += shard["objects"]
    # hex WKB, parsed in one call; shards of earlier versions hold WKT
    wkb = [o["wkb"] for o in records if "wkb" in o]
    parsed = iter(shapely.from_wkb(np.asarray(wkb, dtype=object)))
    objs = [TileObject(o["label"], o["tile"],
                       next(parsed) if "wkb" in o else shapely.from_wkt(o["wkt"]), o["score"],
                       o["area_px"], np.asarray(o["sums"]) if "sums" in o else None)
            for o in records]
    return objs, dict(timings), encodings


def finalize_slide(slide: Slide, plan: SlidePlan, paths: OutputPaths, segmented: list[Tile],
                   instances: bool, wcfg: WsiConfig, record: dict[str, Any],
                   timings: dict[str, float], t_start: float,
                   cpu: tuple[CpuAccount, int] | None = None,
                   expected_um2: tuple[float, float] | None = None) -> SlideSummary:
    """Write the final outputs of a slide whose batches are all done; `record` is run.json
    so far (this adds objects, the Zarr levels and the timings). `cpu`: the run's CPU account
    and the tiles this process segmented (run.json `cpu_s`; None: `cpu_s` is null, the tiles
    ran in other processes). `expected_um2`: the reference objects' area range (instances:
    objects far outside it are flagged)."""
    t = time.perf_counter()
    objs, stage_sums, encodings = load_shards(paths.shards)
    survey = record["tiles"].pop("survey_encodings", {})
    record["tiles"].update({k: v + survey.get(k, 0) for k, v in encodings.items()})
    progress.info("%s finalize: merging %d pieces across tile borders", paths.stem, len(objs))
    objs, mapping = merge_instances(objs) if instances else (merge_regions(objs), {})
    timings["merge"] = time.perf_counter() - t
    t = time.perf_counter()
    progress.info("%s finalize: %d objects; building the label pyramid", paths.stem, len(objs))
    levels = _label_pyramid(paths, plan, segmented, objs, mapping, instances, wcfg)
    timings["pyramid"] = time.perf_counter() - t
    t = time.perf_counter()
    progress.info("%s finalize: %d levels; writing the GeoJSON, tables, overview and manifest",
                  paths.stem, levels)
    table, tables, tissue = _write_outputs(slide, plan, paths, objs, instances, wcfg, levels,
                                           expected_um2, record["run_key"])
    timings["write_outputs"] = time.perf_counter() - t
    for stage, sec in stage_sums.items():
        timings[f"tiles_{stage}"] = sec
    timings["total"] = time.perf_counter() - t_start
    record = {**record, **_results(table, tables, tissue, paths, levels, instances),
              "target_in_tissue_mm2": tissue.target_inside_mm2,
              "timings_s": timings,
              "cpu_s": cpu[0].record(cpu[1]) if cpu is not None else None}
    record["warnings"] = slide_warnings(record)
    for line in record["warnings"]:
        log.warning("%s: %s", paths.stem, line)
    record["finished_utc"] = utc_now()
    manifest = build_manifest(paths.out_dir, [paths.geojson, paths.tissue_geojson,
                                              paths.overview, *tables], paths.zarr)
    record["manifest"] = {"file": paths.manifest.name,
                          "sha256": write_manifest(paths.manifest, manifest)}
    write_run_json(paths.run_json, sign_record(_ordered(record)))
    shutil.rmtree(paths.shards, ignore_errors=True)
    grid = plan.grid
    return SlideSummary(paths.stem, grid.n_grid, len(grid.tiles), len(segmented), len(objs),
                        timings["total"], paths.outputs())


def _label_pyramid(paths: OutputPaths, plan: SlidePlan, segmented: list[Tile],
                   objs: list[TileObject], mapping: dict[int, int], instances: bool,
                   wcfg: WsiConfig) -> int:
    """The merged objects' ids in the level-0 chunks the tiles wrote, then the pyramid and its
    metadata (in the `.partial` store); returns the level count."""
    stride = plan.grid.stride
    written = {(tile.core.y0 // stride, tile.core.x0 // stride) for tile in segmented}
    relabel(open_level0(paths.partial), mapping, written)
    labels = (LabelInfo.instances(wcfg.class_name, [o.label for o in objs]) if instances
              else LabelInfo.region(wcfg.class_name, wcfg.class_color))
    # named by the class: viewers (napari-ome-zarr, ome-zarr-py) name the layer after it
    return build_pyramid(paths.partial, wcfg.pyramid_min_px, plan.scale.working_mpp,
                         wcfg.class_name, written, labels)


@dataclass(frozen=True)
class _Tissue:
    polygons: list[Any]  # level-0 pixels
    area_mm2: float
    target_inside_mm2: float  # of the objects' area


def _write_outputs(slide: Slide, plan: SlidePlan, paths: OutputPaths, objs: list[TileObject],
                   instances: bool, wcfg: WsiConfig, levels: int,
                   expected_um2: tuple[float, float] | None, run_key: str
                   ) -> tuple[Any, list[Path], _Tissue]:
    """The transaction: the previous run.json goes first (its outputs no longer look complete),
    then the store, GeoJSON, tables and overview are replaced (run.json comes last, after
    this). Returns the objects table, the table files and the tissue."""
    object_type = "detection" if instances else "annotation"
    bounds = slide.bounds_xy  # GeoJSON and tables in QuPath's frame
    objs_qp = [replace(o, polygon=level0_to_qupath(o.polygon, bounds)) for o in objs]
    table = objects_table(objs_qp, wcfg.class_name, plan.scale.level0, instances, expected_um2,
                          wcfg.object_size_flag)
    collection = feature_collection(objs_qp, object_type, wcfg.class_name, wcfg.class_color,
                                    table, run_key)
    thumb, thumb_downsample = slide.thumbnail(wcfg.overview_px)
    tissue = _tissue(slide, plan, objs)
    paths.run_json.unlink(missing_ok=True)
    paths.manifest.unlink(missing_ok=True)
    shutil.rmtree(paths.zarr, ignore_errors=True)
    paths.partial.rename(paths.zarr)
    write_geojson(paths.geojson, collection)
    write_geojson(paths.tissue_geojson, tissue_collection(
        [level0_to_qupath(poly, bounds) for poly in tissue.polygons], [30, 90, 255], run_key))
    tables = write_objects(paths.objects_csv, table)
    legend = Legend(class_name=wcfg.class_name, color_rgb=wcfg.class_color, objects=len(objs),
                    target_mm2=float(table["area_um2"].sum()) / 1e6,
                    tissue_mm2=tissue.area_mm2, target_in_tissue_mm2=tissue.target_inside_mm2,
                    um_per_px=thumb_downsample * plan.scale.slide_mpp, instances=instances)
    write_overview(paths.overview, thumb, plan.tissue.tissue,
                   # the result at the overview's own detail (at most twice its size)
                   read_level(paths.zarr, finest_level_within(paths.zarr, levels,
                                                              2 * wcfg.overview_px)) > 0,
                   legend)
    return table, tables, tissue


def _tissue(slide: Slide, plan: SlidePlan, objs: list[TileObject]) -> _Tissue:
    """The detected tissue as level-0 polygons, its area and the objects' area inside it."""
    mask = plan.tissue.tissue
    thumb_scale = Scale(plan.scale.slide_mpp, plan.scale.slide_mpp * slide.dimensions[0]
                        / mask.shape[1])
    polys = [o.polygon for o in tile_objects(mask, None, mask.astype(np.float32), 0, (0, 0),
                                             thumb_scale, 1.0)]
    return _Tissue(polys, thumb_scale.area_um2(float(mask.sum())) / 1e6,
                   _inside_tissue_mm2(objs, polys, plan.scale.level0))


def _inside_tissue_mm2(objs: list[TileObject], tissue_level0: list[Any], level0: Scale
                       ) -> float:
    """The target's area inside the detected tissue (the tissue is found on a thumbnail and
    the target in tiles, so a little target can lie outside it; a fraction of the tissue is
    a fraction of this)."""
    if not objs or not tissue_level0:
        return 0.0
    inside = shapely.union_all(np.asarray(tissue_level0, dtype=object))
    shapely.prepare(inside)
    parts = shapely.intersection(np.asarray([o.polygon for o in objs], dtype=object), inside)
    return level0.area_um2(float(shapely.area(parts).sum())) / 1e6


def _results(table: Any, tables: list[Path], tissue: _Tissue, paths: OutputPaths, levels: int,
             instances: bool) -> dict[str, Any]:
    """run.json's result fields: objects, their area and score, tissue, tables, store."""
    area_um2 = table["area_um2"]
    flagged = {f: int((table["size_flag"] == f).sum()) for f in ("large", "small")}
    return {"objects": len(table), "object_type": "detection" if instances else "annotation",
            **({"objects_flagged": flagged} if instances else {}),
            "target_area_mm2": float(area_um2.sum()) / 1e6,
            "mean_score": float((table["score"] * area_um2).sum() / max(area_um2.sum(), 1e-9)),
            "tissue": {"area_mm2": tissue.area_mm2, "pieces": len(tissue.polygons),
                       "geojson": str(paths.tissue_geojson)},
            "tables": [str(p) for p in tables],
            "zarr": {"path": str(paths.zarr), "levels": levels,
                     "level0": "working resolution (working_mpp µm/px)"}}


_ORDER = ("schema_version", "run_key", "command", "started_utc", "finished_utc", "host",
          "device", "warnings", "slide", "working_mpp", "tile_px", "overlap_px", "tiles",
          "objects", "object_type", "target_area_mm2", "target_in_tissue_mm2", "mean_score",
          "tissue", "zarr", "tables", "manifest", "timings_s", "cpu_s", "reference",
          "calibration", "open_set", "models", "config", "versions")


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    """run.json's keys in their documented order (the rest after them)."""
    head = {k: record[k] for k in _ORDER if k in record}
    return {**head, **{k: v for k, v in record.items() if k not in head}}
