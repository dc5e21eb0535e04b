"""Per-object measurements, as QuPath measures its cell detections: area, perimeter, the axes
and eccentricity of the ellipse with the object's second moments (as scikit-image's
`regionprops`), solidity, and (instances) mean RGB and mean haematoxylin / eosin density of its
pixels; in µm from level-0 polygons at the slide's pixel size."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.polygon import orient

from wsi_sat.geometry import Scale

SHAPE_COLUMNS = ("area_um2", "perimeter_um", "major_axis_um", "minor_axis_um",
                 "eccentricity", "solidity")
PIXEL_COLUMNS = ("mean_r", "mean_g", "mean_b", "mean_hematoxylin", "mean_eosin")


def shape_measures(geoms: list, level0: Scale) -> dict[str, np.ndarray]:
    """SHAPE_COLUMNS of each (multi)polygon in level-0 pixels, measured at `level0`'s pixel
    size: the moments summed over every ring of every piece (holes subtract), in one pass."""
    n = len(geoms)
    out = {k: np.zeros(n) for k in SHAPE_COLUMNS}
    if not n:
        return out
    oriented = np.asarray([shapely.MultiPolygon([orient(p, 1.0) for p in g.geoms])
                           if g.geom_type == "MultiPolygon" else orient(g, 1.0) for g in geoms],
                          dtype=object)
    rings, ring_geom = shapely.get_rings(shapely.get_parts(oriented), return_index=True)
    part_geom = shapely.get_parts(oriented, return_index=True)[1]
    owner = part_geom[ring_geom]
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    x0, y0 = xy[:-1, 0], xy[:-1, 1]
    x1, y1 = xy[1:, 0], xy[1:, 1]
    same = ring_of[:-1] == ring_of[1:]  # edges within one ring
    obj = owner[ring_of[:-1]][same]
    x0, y0, x1, y1 = x0[same], y0[same], x1[same], y1[same]
    c = x0 * y1 - x1 * y0

    def per_object(v: np.ndarray) -> np.ndarray:
        return np.bincount(obj, weights=v, minlength=n)

    area = per_object(c) / 2.0
    safe = np.where(np.abs(area) > 1e-12, area, 1.0)
    cx = per_object((x0 + x1) * c) / (6.0 * safe)
    cy = per_object((y0 + y1) * c) / (6.0 * safe)
    mu20 = per_object((x0 * x0 + x0 * x1 + x1 * x1) * c) / (12.0 * safe) - cx * cx
    mu02 = per_object((y0 * y0 + y0 * y1 + y1 * y1) * c) / (12.0 * safe) - cy * cy
    mu11 = per_object((x0 * y1 + 2 * x0 * y0 + 2 * x1 * y1 + x1 * y0) * c) / (24.0 * safe) \
        - cx * cy
    half_sum, root = (mu20 + mu02) / 2.0, np.sqrt(((mu20 - mu02) / 2.0) ** 2 + mu11 * mu11)
    big, small = np.maximum(half_sum + root, 0.0), np.maximum(half_sum - root, 0.0)
    out["area_um2"] = level0.area_um2(area)
    out["perimeter_um"] = level0.um(shapely.length(oriented))
    out["major_axis_um"] = level0.um(4.0 * np.sqrt(big))
    out["minor_axis_um"] = level0.um(4.0 * np.sqrt(small))
    out["eccentricity"] = np.sqrt(np.where(big > 0, 1.0 - small / np.where(big > 0, big, 1.0),
                                           0.0))
    hull = shapely.area(shapely.convex_hull(oriented))
    out["solidity"] = np.where(hull > 0, area / np.where(hull > 0, hull, 1.0), 0.0)
    return out


def pixel_measures(sums: list[np.ndarray | None], areas_px: list[int]) -> dict[str, np.ndarray]:
    """PIXEL_COLUMNS from each object's pixel sums (R, G, B, H, E) and pixel count; NaN where
    an object has no sums (regions)."""
    out = np.full((len(sums), len(PIXEL_COLUMNS)), np.nan)
    for i, (s, n) in enumerate(zip(sums, areas_px)):
        if s is not None and n > 0:
            out[i] = np.asarray(s) / n
    return {k: out[:, j] for j, k in enumerate(PIXEL_COLUMNS)}


def size_flags(areas_um2: np.ndarray, expected_um2: tuple[float, float] | None,
               factor: float) -> list[str]:
    """'large' / 'small' for objects more than `factor` x outside the reference objects'
    area range (`expected_um2` low, high); '' otherwise or without a range."""
    if expected_um2 is None:
        return [""] * len(areas_um2)
    low, high = expected_um2
    return ["large" if a > factor * high else "small" if a * factor < low else ""
            for a in areas_um2]
