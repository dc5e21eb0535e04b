"""The checks of a finished label store that need no hash (`wsi-sat check`, pipeline/verify.py):
each pyramid level equals the level below it subsampled, the store holds the objects the tables
name, and the GeoJSON's polygons, rasterised, cover what the store labels. They catch damage a
manifest cannot: outputs that were each rewritten whole (and the manifest with them) yet no
longer describe one another. Every read goes chunk by chunk, so a whole slide's store is never
held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
import zarr

from wsi_sat.geometry import Scale, qupath_to_level0
from wsi_sat.writers.ome_zarr import FORMAT, finest_level_within

# the finest level compared with the polygons has at most this many pixels on its long side
POLYGON_LEVEL_MAX_PX = 4096
# share of labelled pixels the polygons must cover (and of polygon pixels the labels must
# cover), each within one pixel: the polygons are simplified by a fraction of a pixel
MIN_AGREEMENT = 0.95
# an object is compared on its own when it covers this many pixels of the compared level
MIN_OBJECT_PX = 8


def _levels(store: Path, n: int) -> list[zarr.Array]:
    return [zarr.open_array(str(store / str(i)), mode="r", **FORMAT) for i in range(n)]


def stored_chunks(level: Path) -> set[tuple[int, int]]:
    """The chunks a level holds on disk (nested keys `<row>/<column>`); the rest read as 0."""
    out = set()
    for row in level.iterdir() if level.is_dir() else []:
        if row.is_dir() and row.name.isdigit():
            out |= {(int(row.name), int(c.name)) for c in row.iterdir() if c.name.isdigit()}
    return out


def _windows(arr: zarr.Array, chunks: set[tuple[int, int]]) -> Iterator[tuple[slice, slice]]:
    ch, cw = arr.chunks
    for y, x in sorted(chunks):
        yield slice(y * ch, (y + 1) * ch), slice(x * cw, (x + 1) * cw)


def pyramid_problem(store: Path, n_levels: int) -> str | None:
    """The first level that is not the level below subsampled [::2, ::2], or None."""
    levels = _levels(store, n_levels)
    for i in range(1, n_levels):
        source, target = levels[i - 1], levels[i]
        if target.shape != (-(-source.shape[0] // 2), -(-source.shape[1] // 2)):
            return f"label level {i} has shape {target.shape}, not half of level {i - 1}"
        ch, cw = target.chunks
        sch, scw = source.chunks
        # every target chunk that is stored, or whose source holds a stored chunk
        windows = stored_chunks(store / str(i)) | {
            (y * sch // (2 * ch), x * scw // (2 * cw)) for y, x in stored_chunks(store / str(i - 1))}
        for ys, xs in _windows(target, windows):
            below = source[2 * ys.start: 2 * ys.stop: 2, 2 * xs.start: 2 * xs.stop: 2]
            if not np.array_equal(np.asarray(target[ys, xs]), below):
                return (f"label level {i} differs from level {i - 1} subsampled near pixel "
                        f"(x {xs.start}, y {ys.start}) of level {i}")
    return None


def stored_labels(store: Path) -> set[int]:
    """Every non-zero label value in level 0."""
    level0 = zarr.open_array(str(store / "0"), mode="r", **FORMAT)
    values: set[int] = set()
    for ys, xs in _windows(level0, stored_chunks(store / "0")):
        values |= {int(v) for v in np.unique(np.asarray(level0[ys, xs])) if v}
    return values


def labels_problem(store: Path, table_labels: list[int], instances: bool) -> str | None:
    """Whether the store's labels are the objects the table lists."""
    found = stored_labels(store)
    expected = set(int(v) for v in table_labels) if instances else ({1} if table_labels else set())
    if found == expected:
        return None
    missing, extra = sorted(expected - found), sorted(found - expected)
    what = []
    if missing:
        what.append(f"{len(missing)} object label(s) of the table are not in the store "
                    f"(first {missing[0]})")
    if extra:
        what.append(f"the store holds {len(extra)} label(s) no object has (first {extra[0]})")
    return "; ".join(what)


def _rings(geom: Any, scale: Scale, level: int) -> list[list[np.ndarray]]:
    """Each polygon of a geometry as its rings on a pyramid level's pixel grid."""
    return [[scale.level0_to_pyramid_centres(np.asarray(r.coords)[:, :2], level)
             for r in (poly.exterior, *poly.interiors)]
            for poly in getattr(geom, "geoms", [geom]) if not poly.is_empty]


def _fill(out: np.ndarray, polygons: list[list[np.ndarray]], origin_xy: tuple[int, int]
          ) -> np.ndarray:
    """Pixels of `out` (whose corner is at `origin_xy`) whose centres are inside a polygon."""
    shift = 4  # sub-pixel vertices, 1/16 px
    for rings in polygons:
        pts = [np.round((r - np.asarray(origin_xy)) * 2**shift).astype(np.int32) for r in rings]
        cv2.fillPoly(out, pts[:1], 1, lineType=cv2.LINE_8, shift=shift)
        if len(pts) > 1:
            cv2.fillPoly(out, pts[1:], 0, lineType=cv2.LINE_8, shift=shift)
    return out


def _covered(a: np.ndarray, b: np.ndarray) -> float:
    """Share of `a`'s pixels within one pixel of `b`'s (1.0 when `a` has none)."""
    n = int(a.sum())
    if n == 0:
        return 1.0
    near = cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8))
    return float((a.astype(bool) & near.astype(bool)).sum()) / n


def _misplaced(polygons: list[list[list[np.ndarray]]], labelled: np.ndarray) -> int | None:
    """The first object whose own pixels are mostly unlabelled (None: none is)."""
    h, w = labelled.shape
    for i, rings_of in enumerate(polygons):
        if not rings_of:
            continue
        xy = np.concatenate([rings[0] for rings in rings_of])
        x0, y0 = np.floor(xy.min(0)).astype(int) - 1
        x1, y1 = np.ceil(xy.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return i  # wholly outside the store
        own = _fill(np.zeros((y1 - y0, x1 - x0), np.uint8), rings_of, (x0, y0))
        if own.sum() >= MIN_OBJECT_PX and _covered(own, labelled[y0:y1, x0:x1]) < 0.5:
            return i
    return None


def polygons_problem(store: Path, n_levels: int, features: list[dict[str, Any]],
                     record: dict[str, Any]) -> str | None:
    """Whether the GeoJSON's polygons, rasterised on a level of the store, cover what it labels
    (and the labels cover the polygons, each object's own pixels too)."""
    levels = _levels(store, n_levels)
    level = finest_level_within(store, n_levels, POLYGON_LEVEL_MAX_PX)
    slide = record.get("slide") or {}
    scale = Scale(float(slide["mpp"]), float(record["working_mpp"]))
    bounds = tuple(slide.get("qupath_origin_level0") or (0, 0))
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in features]) \
        if features else []
    polygons = [_rings(qupath_to_level0(g, bounds), scale, level) for g in geoms]
    raster = np.zeros(levels[level].shape, np.uint8)
    for rings_of in polygons:
        _fill(raster, rings_of, (0, 0))
    labelled = np.asarray(levels[level][:]) > 0
    precision, recall = _covered(labelled, raster), _covered(raster, labelled)
    if min(precision, recall) < MIN_AGREEMENT:
        return (f"the GeoJSON and the label store disagree (level {level}: "
                f"{100 * precision:.0f} % of labelled pixels inside a polygon, "
                f"{100 * recall:.0f} % of polygon pixels labelled)")
    first = _misplaced(polygons, labelled)
    if first is not None:
        return (f"the GeoJSON and the label store disagree: object {first}'s polygon lies on "
                "unlabelled pixels")
    return None
