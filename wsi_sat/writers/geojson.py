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
import shapely
from shapely.geometry.polygon import orient

from wsi_sat.geometry import Scale
from wsi_sat.stitch.polygons import TileObject
from wsi_sat.writers.atomic import write_atomic

AREA, PERIMETER, SCORE = "wsi-sat area µm^2", "wsi-sat perimeter µm", "score"


def tissue_collection(tissue_polygons: list, class_color: list[int]) -> dict:
    """The detected tissue as QuPath annotations of class "Tissue" (level-0 pixels)."""
    polys = [orient(poly, 1.0) for poly in tissue_polygons]
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
                 "properties": {"objectType": "annotation", "isLocked": True,
                                "classification": {"name": "Tissue",
                                                   "color": list(class_color)}}}
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
                       class_color: list[int], level0: Scale) -> dict:
    """The objects (level-0 polygons, measured at `level0`'s pixel size) as a QuPath
    FeatureCollection."""
    features = []
    namespace = uuid.UUID("6f1c0ad2-6e1d-4c43-9bd4-4a2b5c0c7a51")
    polys = [orient(obj.polygon, 1.0) for obj in objs]
    # each measure for every polygon in one call (the same numbers as the per-polygon
    # properties); the ids hash the start of each polygon's WKT, as `poly.wkt` writes it
    geoms = np.asarray(polys, dtype=object)
    wkt = shapely.to_wkt(geoms, rounding_precision=-1).tolist()
    areas_um2 = level0.area_um2(shapely.area(geoms)).tolist()
    perimeters_um = level0.um(shapely.length(geoms)).tolist()
    for i, (obj, rings, text, area_um2, perimeter_um) in enumerate(zip(
            objs, _ring_coordinates(polys), wkt, areas_um2, perimeters_um)):
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(namespace, f"{i}:{text[:200]}")),
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {
                "objectType": object_type,
                "classification": {"name": class_name, "color": list(class_color)},
                "isLocked": False,
                "measurements": {
                    AREA: round(area_um2, 3),
                    PERIMETER: round(perimeter_um, 3),
                    SCORE: round(obj.score, 4),
                },
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, collection: dict) -> None:
    """The collection as compact UTF-8 JSON (orjson: the standard library's document, written
    in a fraction of its time); numpy arrays (the rings of `_ring_coordinates`) are written as
    nested lists of their numbers."""
    write_atomic(Path(path), lambda tmp: tmp.write_bytes(
        orjson.dumps(collection, option=orjson.OPT_SERIALIZE_NUMPY)))
