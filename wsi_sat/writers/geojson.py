"""QuPath-importable GeoJSON: a FeatureCollection of valid, closed, consistently oriented
polygons (exterior counter-clockwise, holes clockwise) in level-0 pixel coordinates.

QuPath reads `objectType` ("annotation" for regions, "detection" for many small objects),
`classification` ({name, color}) and `measurements` (a name → number map; QuPath ≥ 0.4). QuPath
computes "Area µm^2" and "Perimeter µm" of annotations itself and drops measurements of those
names from the file, so wsi-sat's own carry a prefix that survives the import. Import: drag the
file onto the slide in QuPath, or File › Import objects from file.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.polygon import orient

from wsi_sat.stitch.polygons import TileObject
from wsi_sat.writers.atomic import write_atomic

AREA, PERIMETER, SCORE = "wsi-sat area µm^2", "wsi-sat perimeter µm", "score"


def tissue_collection(tissue_polygons: list, class_color: list[int]) -> dict:
    """The detected tissue as QuPath annotations of class "Tissue" (level-0 pixels)."""
    features = []
    for poly in tissue_polygons:
        poly = orient(poly, 1.0)
        rings = [poly.exterior, *poly.interiors]
        features.append({"type": "Feature", "geometry": {
            "type": "Polygon",
            "coordinates": [np.round(shapely.get_coordinates(r), 2).tolist() for r in rings]},
            "properties": {"objectType": "annotation", "isLocked": True,
                           "classification": {"name": "Tissue", "color": list(class_color)}}})
    return {"type": "FeatureCollection", "features": features}


def feature_collection(objs: list[TileObject], object_type: str, class_name: str,
                       class_color: list[int], slide_mpp: float) -> dict:
    features = []
    namespace = uuid.UUID("6f1c0ad2-6e1d-4c43-9bd4-4a2b5c0c7a51")
    for i, obj in enumerate(objs):
        poly = orient(obj.polygon, 1.0)
        rings = [poly.exterior, *poly.interiors]
        geometry = {"type": "Polygon",
                    "coordinates": [np.round(shapely.get_coordinates(r), 2).tolist()
                                    for r in rings]}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(namespace, f"{i}:{poly.wkt[:200]}")),
            "geometry": geometry,
            "properties": {
                "objectType": object_type,
                "classification": {"name": class_name, "color": list(class_color)},
                "isLocked": False,
                "measurements": {
                    AREA: round(poly.area * slide_mpp**2, 3),
                    PERIMETER: round(poly.length * slide_mpp, 3),
                    SCORE: round(obj.score, 4),
                },
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, collection: dict) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(collection, ensure_ascii=False))

    write_atomic(Path(path), write)
