"""QuPath-importable GeoJSON: a FeatureCollection of valid, closed, consistently oriented
polygons (exterior counter-clockwise, holes clockwise) in level-0 pixel coordinates.

QuPath reads `objectType` ("annotation" for regions, "detection" for many small objects),
`classification` ({name, color}) and `measurements` (a name → number map; QuPath ≥ 0.4). QuPath
computes "Area µm^2" and "Perimeter µm" of annotations itself and drops measurements of those
names from the file, so wsi-sat's own carry a prefix that survives the import. Import: drag the
file onto the slide in QuPath, or File › Import objects from file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import shapely
from shapely.geometry.polygon import orient

from wsi_sat.stitch.polygons import TileObject
from wsi_sat.writers.atomic import write_atomic

AREA, PERIMETER, SCORE = "wsi-sat area µm^2", "wsi-sat perimeter µm", "score"
# every object wsi-sat writes carries `properties.metadata[TAG]` = the run key's first 12 hex
# digits; QuPath keeps it as object metadata where the object type stores metadata
# (annotations), so the import script replaces only what wsi-sat wrote
TAG = "wsi-sat run"


def tissue_collection(tissue_polygons: list, class_color: list[int], run_key: str = "") -> dict:
    """The detected tissue as QuPath annotations of class "Tissue" (level-0 pixels)."""
    polys = [orient(poly, 1.0) for poly in tissue_polygons]
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
                 "properties": {"objectType": "annotation", "isLocked": True,
                                "classification": {"name": "Tissue",
                                                   "color": list(class_color)},
                                "metadata": {TAG: run_key[:12]}}}
                for rings in _ring_coordinates(polys)]
    return {"type": "FeatureCollection", "features": features}


def _ring_coordinates(polys: list) -> list[list[np.ndarray]]:
    """Each polygon's rings (exterior first, then its holes) as (n, 2) float64 arrays of [x, y]
    rounded to 2 decimals, views of one array: every polygon's coordinates taken and rounded in
    one call each, not ring by ring. orjson writes them as the same numbers as lists of floats
    would be (`write_geojson`), without a Python list per point (and the garbage collections
    hundreds of thousands of them trigger)."""
    if not polys:
        return []
    rings, ring_poly = shapely.get_rings(np.asarray(polys, dtype=object), return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    values = np.round(coords, 2)
    ring_ends = np.cumsum(np.bincount(coord_ring, minlength=len(rings))).tolist()
    poly_ends = np.cumsum(np.bincount(ring_poly, minlength=len(polys))).tolist()
    ring_arrays = [values[a:b] for a, b in zip([0, *ring_ends[:-1]], ring_ends)]
    return [ring_arrays[a:b] for a, b in zip([0, *poly_ends[:-1]], poly_ends)]


def feature_collection(objs: list[TileObject], object_type: str, class_name: str,
                       class_color: list[int], table: pd.DataFrame, run_key: str = "") -> dict:
    """The objects (level-0 polygons; an instance of several pieces a MultiPolygon) as a QuPath
    FeatureCollection, with the measurements of their rows of `objects_table`."""
    features = []
    namespace = uuid.UUID("6f1c0ad2-6e1d-4c43-9bd4-4a2b5c0c7a51")
    geoms = np.asarray([_oriented(obj.polygon) for obj in objs], dtype=object)
    # the ids hash the start of each polygon's WKT, as `poly.wkt` writes it
    wkt = shapely.to_wkt(geoms, rounding_precision=-1).tolist()
    parts, owner = shapely.get_parts(geoms, return_index=True)
    part_rings = _ring_coordinates(list(parts))
    rings_of: list[list] = [[] for _ in objs]
    for o, rings in zip(owner.tolist(), part_rings):
        rings_of[o].append(rings)
    measures = _measurements(table)
    for i, (obj, text, pieces) in enumerate(zip(objs, wkt, rings_of)):
        geometry = ({"type": "Polygon", "coordinates": pieces[0]} if len(pieces) == 1 else
                    {"type": "MultiPolygon", "coordinates": pieces})
        properties = {"objectType": object_type,
                      "classification": {"name": class_name, "color": list(class_color)},
                      "isLocked": False, "measurements": measures[i],
                      "metadata": {TAG: run_key[:12]}}
        if "size_flag" in table and table["size_flag"].iat[i]:
            properties["wsi-sat size flag"] = table["size_flag"].iat[i]
        features.append({"type": "Feature", "id": str(uuid.uuid5(namespace, f"{i}:{text[:200]}")),
                         "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _oriented(geom):  # type: ignore[no-untyped-def]
    if geom.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(p, 1.0) for p in geom.geoms])
    return orient(geom, 1.0)


def _measurements(table: pd.DataFrame) -> list[dict[str, float]]:
    """Each row's numbers under QuPath measurement names (NaN left out: a region has no pixel
    means)."""
    names = {"area_um2": (AREA, 3), "perimeter_um": (PERIMETER, 3), "score": (SCORE, 4),
             **{c: (f"wsi-sat {c.replace('_', ' ')}", 4) for c in
                ("major_axis_um", "minor_axis_um", "eccentricity", "solidity", "mean_r",
                 "mean_g", "mean_b", "mean_hematoxylin", "mean_eosin")}}
    cols = [(c, name, digits) for c, (name, digits) in names.items() if c in table]
    values = {c: table[c].to_numpy(dtype=float) for c, _, _ in cols}
    return [{name: round(float(values[c][i]), digits) for c, name, digits in cols
             if np.isfinite(values[c][i])} for i in range(len(table))]


def write_geojson(path: Path, collection: dict) -> None:
    """The collection as compact UTF-8 JSON (orjson: the standard library's document, written
    in a fraction of its time); numpy arrays (the rings of `_ring_coordinates`) are written as
    nested lists of their numbers."""
    write_atomic(Path(path), lambda tmp: tmp.write_bytes(
        orjson.dumps(collection, option=orjson.OPT_SERIALIZE_NUMPY)))
