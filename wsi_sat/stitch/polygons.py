"""Masks → polygons (holes kept) and the merge of objects cut by tile borders.

Per tile, each object of the core region becomes a valid shapely polygon in level-0 pixels.
After all tiles: in region mode polygons that intersect are unioned (objects that continue
across a border become one; the result is the union of all polygons, computed group by group);
in instances mode only polygons of *different* tiles that touch are merged, so separate objects
inside one tile stay separate. Both find their groups with an STRtree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient
from shapely.strtree import STRtree

from wsi_sat.geometry import Scale
from wsi_sat.morphology import label_components


@dataclass
class TileObject:
    label: int  # unique across the slide (instances) or 0 (regions)
    tile: int
    polygon: Polygon | MultiPolygon  # level-0 pixels; an instance of several pieces: Multi
    score: float
    area_px: int  # working pixels (for score weighting)
    # instances: sums over the object's pixels of R, G, B and the H and E stains (means later)
    sums: np.ndarray | None = None


def _polys_from_binary(mask: np.ndarray, prob: np.ndarray, simplify_px: float
                       ) -> list[tuple[Polygon, int, float]]:
    """Polygons with holes of a binary mask, in pixel-edge coordinates (x, y), each with the
    pixel count and mean probability of its connected component (8-connected, as the contours).

    Contours are traced on the mask upsampled 2x (so they run 1/4 px inside the pixel edges),
    simplified by Douglas-Peucker (`simplify_px`) while still vertex-dense, then moved out to
    the pixel edges by a 1/4 px mitre buffer."""
    m = np.ascontiguousarray(mask.astype(np.uint8))
    if not m.any():
        return []
    n, comp = label_components(m, 8)
    # pixel count and probability sum per component, over the foreground pixels only (label
    # 0, the background, is never an object)
    fg = comp > 0
    labels_fg = comp[fg].astype(np.intp)
    areas = np.bincount(labels_fg, minlength=n)
    sums = np.bincount(labels_fg, weights=np.asarray(prob)[fg].astype(np.float64), minlength=n)
    polys, labels = _traced(m, comp, simplify_px)
    if not polys:
        return []
    out = []
    for label, parts in zip(labels, _at_pixel_edges(polys)):
        if not parts:
            continue
        # a pinched outline (diagonal touch) may fall apart: its pixels are shared by area,
        # rounded cumulatively so that the parts' counts add up to the component's
        shares = np.cumsum([p.area for p in parts])
        counts = np.diff(np.round(areas[label] * shares / shares[-1]).astype(np.int64),
                         prepend=0)
        score = float(sums[label] / max(areas[label], 1))
        out += [(part, int(c), score) for part, c in zip(parts, counts)]
    return out


def _traced(m: np.ndarray, comp: np.ndarray, simplify_px: float
            ) -> tuple[list[Polygon], list[int]]:
    """The outer contours (with their holes) of a uint8 mask, traced on the mask upsampled 2x
    and simplified, in pixel-edge coordinates; and each one's component label in `comp`."""
    # pad so contours of objects touching the border close along the pixel edges
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    big = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return [], []
    hierarchy = hierarchy[0]
    eps = 2.0 * simplify_px  # in upsampled pixels
    polys, labels = [], []
    for i, cnt in enumerate(contours):
        if hierarchy[i][3] != -1 or len(cnt) < 3:  # holes are collected with their parent
            continue
        bx, by = cnt[0, 0]
        labels.append(comp[by // 2 - 1, bx // 2 - 1])  # an outer contour runs on its own pixels
        holes = []
        child = hierarchy[i][2]
        while child != -1:
            if len(contours[child]) >= 3:
                holes.append(_to_xy(_simplified(contours[child], eps)))
            child = hierarchy[child][0]
        polys.append(Polygon(_to_xy(_simplified(cnt, eps)), holes))
    return polys, labels


def _at_pixel_edges(polys: list[Polygon]) -> list[list[Polygon]]:
    """Each traced outline made valid and moved out to the pixel edges, as its polygons of
    positive area. GEOS over the tile's outlines in one call each (shapely's array
    functions): an outline that touches itself (a diagonal pinch) or crosses itself
    (simplified) is repaired by the 'structure' method (the area its shell bounds less its
    holes'), then each moves out by a 1/4 px mitre buffer."""
    geoms = np.asarray(polys, dtype=object)
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure",
                                            keep_collapsed=False)
    return [_polygons_of(grown)
            for grown in shapely.buffer(geoms, 0.25, quad_segs=16, join_style="mitre")]


def _simplified(cnt: np.ndarray, eps: float) -> np.ndarray:
    """Douglas-Peucker; outlines too small to keep three corners stay as traced."""
    if eps <= 0:
        return cnt
    out = cv2.approxPolyDP(cnt, eps, True)
    return out if len(out) >= 3 else cnt


def _to_xy(cnt: np.ndarray) -> np.ndarray:
    # contour points of the 2x, 1-padded image → pixel-edge coordinates of the original
    return (cnt[:, 0, :].astype(np.float64) + 0.5) / 2.0 - 1.0


def _polygons_of(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    if hasattr(geom, "geoms"):
        return [g for part in geom.geoms for g in _polygons_of(part)]
    return []


def tile_objects(core_mask: np.ndarray, core_labels: np.ndarray | None, prob: np.ndarray,
                 tile: int, origin_working: tuple[int, int], scale: Scale,
                 simplify_px: float, sums: dict[int, np.ndarray] | None = None
                 ) -> list[TileObject]:
    """Objects of one tile's core (whose corner is at `origin_working`): polygons in level-0
    pixels, each with its pixel count and score (mean probability of its pixels). Regions: one
    object per connected component; instances: one object per label (cropped to the label's
    bounding box; a MultiPolygon when the label has pieces), with its pixel `sums`."""
    ox, oy = origin_working
    groups: list[tuple[int, tuple[slice, slice]]]
    if core_labels is not None:
        values = np.unique(core_labels)
        values = values[values > 0]
        dense = np.searchsorted(values, core_labels) + 1
        dense[core_labels <= 0] = 0
        boxes = ndimage.find_objects(dense)
        groups = [(int(v), box) for v, box in zip(values, boxes) if box is not None]
    else:
        groups = [(0, (slice(None), slice(None)))]
    out: list[TileObject] = []
    for label, box in groups:
        m = core_labels[box] == label if core_labels is not None else core_mask
        dy, dx = box[0].start or 0, box[1].start or 0
        found = _polys_from_binary(m, prob[box], simplify_px)
        moved = scale.geometries_to_level0([poly for poly, _, _ in found], (ox + dx, oy + dy))
        pieces = [TileObject(label, tile, poly, score, area)
                  for poly, (_, area, score) in zip(moved, found)]
        label_sums = (sums or {}).get(label)
        if core_labels is None or len(pieces) <= 1:
            out += [replace(p, sums=label_sums) for p in pieces]
        else:  # one label, one object
            out.append(TileObject(label, tile, MultiPolygon([p.polygon for p in pieces]),
                                  _weighted_score(pieces), sum(p.area_px for p in pieces),
                                  label_sums))
    return out


def _weighted_score(objs: list[TileObject]) -> float:
    total = sum(o.area_px for o in objs)
    return sum(o.score * o.area_px for o in objs) / total if total else 0.0


def _touching_groups(objs: list[TileObject], across_tiles_only: bool
                     ) -> tuple[list[list[int]], STRtree]:
    """Connected groups of objects whose polygons intersect (touching counts), found with an
    STRtree; `across_tiles_only` links only objects of different tiles. Also returns the tree."""
    tree = STRtree([o.polygon for o in objs])
    parent = list(range(len(objs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left, right = tree.query([o.polygon for o in objs], predicate="intersects")
    for a, b in zip(left.tolist(), right.tolist()):
        if a < b and not (across_tiles_only and objs[a].tile == objs[b].tile):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(len(objs)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values()), tree


def merge_regions(objs: list[TileObject]) -> list[TileObject]:
    """The union of all region polygons, one object per connected part (holes kept), each
    scored by the area-weighted score of the tile objects it meets. Computed per group of
    intersecting polygons: only objects cut by a tile border (or touching another) are unioned,
    so the cost follows the border objects, not the slide (one union over all of a dense
    slide's polygons is slow)."""
    if not objs:
        return []
    groups, tree = _touching_groups(objs, across_tiles_only=False)
    out = []
    for members in groups:
        polys = [objs[i].polygon for i in members]
        geom = polys[0] if len(polys) == 1 and polys[0].is_valid else \
            shapely.make_valid(shapely.union_all(polys))
        for part in _polygons_of(geom):
            # an object alone in its group meets itself only (whatever met it would be in
            # its group): no query, most of a slide's objects
            meets = [objs[members[0]]] if len(members) == 1 else \
                [objs[i] for i in tree.query(part, predicate="intersects")]
            out.append(TileObject(0, -1, orient(part, 1.0), _weighted_score(meets),
                                  sum(o.area_px for o in meets)))
    return out


def merge_instances(objs: list[TileObject]) -> tuple[list[TileObject], dict[int, int]]:
    """Merge instance polygons of different tiles that touch (one object cut by a tile border);
    returns the objects (a MultiPolygon where an object has pieces: one label, one object) and
    the label mapping (old label → kept label, 0 for an object without area) to apply to the
    label image."""
    if not objs:
        return [], {}
    groups, _ = _touching_groups(objs, across_tiles_only=True)
    out, mapping = [], {}
    for members in groups:
        group = [objs[i] for i in members]
        geom = shapely.make_valid(shapely.union_all([g.polygon for g in group]))
        parts = [orient(p, 1.0) for p in _polygons_of(geom)]
        keep = min(g.label for g in group) if parts else 0
        for g in group:
            mapping[g.label] = keep
        if not parts:
            continue
        sums = [g.sums for g in group if g.sums is not None]
        out.append(TileObject(keep, objs[members[0]].tile,
                              parts[0] if len(parts) == 1 else MultiPolygon(parts),
                              _weighted_score(group), sum(g.area_px for g in group),
                              np.sum(sums, axis=0) if sums else None))
    return out, mapping

