"""Reading QuPath annotation exports (GeoJSON) in every form QuPath writes.

QuPath's *Export objects as GeoJSON* (and `exportObjectsToGeoJson`) writes a bare JSON array of
features by default, a FeatureCollection with "Export as FeatureCollection", and a single
Feature for one object (`.geojson.gz` when compressed); geometries are Polygon or MultiPolygon
in level-0 pixels. The class is
`properties.classification.name` (QuPath ≥ 0.3; older exports: a plain string). Invalid polygons
are repaired with `shapely.make_valid` (with a warning); points and lines are skipped.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from wsi_sat.errors import ReferenceError

log = logging.getLogger(__name__)

UNCLASSIFIED = "(unclassified)"


@dataclass(frozen=True)
class Annotation:
    geometry: Polygon | MultiPolygon  # level-0 pixels, valid, non-empty
    class_name: str  # UNCLASSIFIED when the annotation has no class


def _features(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        kind = data.get("type")
        if kind == "FeatureCollection":
            return list(data.get("features") or [])
        if kind == "Feature":
            return [data]
        if kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
            return [{"type": "Feature", "geometry": data, "properties": {}}]
    return []


def _class_name(feature: dict[str, Any]) -> str:
    cls = (feature.get("properties") or {}).get("classification")
    if isinstance(cls, dict) and cls.get("name"):
        return str(cls["name"])
    if isinstance(cls, str) and cls:
        return cls
    return UNCLASSIFIED


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    """Every polygon with an area in a geometry, collections of collections included."""
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    return [p for g in getattr(geom, "geoms", []) for p in _polygons(g)]


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The polygonal part of a geometry (repaired when invalid; overlapping parts of a
    collection merged), or None."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = _polygons(geom)
    if not polys:
        return None
    merged = polys[0] if len(polys) == 1 else shapely.union_all(polys)
    return merged if isinstance(merged, (Polygon, MultiPolygon)) else _polygonal(merged)


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_annotations(path: Path) -> list[Annotation]:
    """Every polygonal annotation of a QuPath GeoJSON export, with its class."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"GeoJSON '{path}' not found; export the annotations from QuPath")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # QuPath's .geojson.gz
            raw = gzip.decompress(raw)
        data = json.loads(raw, parse_constant=_not_json_constant)
    except RecursionError:
        raise ReferenceError(f"'{path}' nests its arrays too deeply to be GeoJSON; export "
                             "annotations from QuPath") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN / Infinity
        raise ReferenceError(f"'{path}' is not GeoJSON ({str(exc)[:80]}); export annotations "
                             "from QuPath") from None
    except (OSError, EOFError, gzip.BadGzipFile):
        raise ReferenceError(f"'{path}' is not GeoJSON; export annotations from QuPath") from None
    out: list[Annotation] = []
    non_finite = 0
    for i, feature in enumerate(_features(data)):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in (
                "Polygon", "MultiPolygon", "GeometryCollection"):
            continue
        try:
            geom = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError,
                shapely.errors.GEOSException):
            log.warning("%s: feature %d has a malformed geometry; skipped", path.name, i)
            continue
        if not np.isfinite(shapely.get_coordinates(geom)).all():
            log.warning("%s: feature %d has a vertex that is not a finite number; skipped",
                        path.name, i)
            non_finite += 1
            continue
        valid = _polygonal(geom)
        if valid is None:
            log.warning("%s: feature %d has no area; skipped", path.name, i)
            continue
        if not geom.is_valid:
            log.warning("%s: feature %d was not a valid polygon; repaired", path.name, i)
        out.append(Annotation(valid, _class_name(feature)))
    if not out and non_finite:
        raise ReferenceError(f"'{path}': every polygon has a vertex that is not a finite number "
                             "(NaN or Infinity); export the annotations from QuPath again")
    if not out:
        raise ReferenceError(f"'{path}' holds no polygon annotation; draw one in QuPath")
    return out


def choose_class(annotations: list[Annotation], class_name: str | None, source: str) -> str:
    """The target class: `class_name` (which must occur), else the most frequent class."""
    counts = Counter(a.class_name for a in annotations)
    if class_name is None:
        return counts.most_common(1)[0][0]
    if class_name in counts:
        return class_name
    raise ReferenceError(
        f"'{source}' has no annotation of class '{class_name}'; its classes: "
        f"{', '.join(sorted(counts))} (pass one of them as --class-name)")


def split_by_class(annotations: list[Annotation], class_name: str | None, source: str,
                   require_target: bool = True
                   ) -> tuple[list[Annotation], list[Annotation], str]:
    """(target annotations, negative annotations, the target class): the target is
    `class_name`, else the most frequent class; every other class is a negative. A negative
    that overlaps a target is an error. Without `require_target` an export may hold negatives
    only (a correction that outlines only what was wrongly found)."""
    if class_name is None or require_target:
        chosen = choose_class(annotations, class_name, source)
    else:
        chosen = class_name
    targets = [a for a in annotations if a.class_name == chosen]
    negatives = [a for a in annotations if a.class_name != chosen]
    target_union = shapely.union_all([a.geometry for a in targets])
    for neg in negatives:
        if neg.geometry.intersection(target_union).area > 0:
            raise ReferenceError(
                f"'{source}': an annotation of class '{neg.class_name}' overlaps the target "
                f"class '{chosen}'; a negative example must not cover the target")
    return targets, negatives, chosen
