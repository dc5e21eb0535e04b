"""Fuzzing (hypothesis) of what takes user input or merges geometry: the QuPath GeoJSON reader,
the config loader / `--set` parser and the polygon merger. Never a traceback: a typed error
(exit 2 in the CLI) or a result; never an invalid polygon out."""

import json

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon, box

from wsi_sat.config import load_config
from wsi_sat.errors import WsiSatError
from wsi_sat.geometry import Scale
from wsi_sat.reference.qupath import read_annotations, split_by_class
from wsi_sat.stitch.polygons import TileObject, merge_instances, merge_regions, tile_objects

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

coord = st.one_of(st.floats(-1e4, 1e4, allow_nan=False), st.integers(-10, 10),
                  st.just(float("nan")), st.just(float("inf")), st.text(max_size=3))
ring = st.lists(st.lists(coord, min_size=0, max_size=3), min_size=0, max_size=8)
geometry = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["Polygon", "LineString", "Point", "Bogus"]),
                           "coordinates": st.lists(ring, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("MultiPolygon"),
                           "coordinates": st.lists(st.lists(ring, max_size=2), max_size=3)}),
    st.none(), st.integers(), st.text(max_size=5))
classification = st.one_of(st.none(), st.text(max_size=6),
                           st.fixed_dictionaries({"name": st.one_of(st.text(max_size=6),
                                                                    st.none(), st.integers())}))
feature = st.one_of(
    st.fixed_dictionaries({"type": st.just("Feature"), "geometry": geometry,
                           "properties": st.one_of(st.none(), st.fixed_dictionaries(
                               {"classification": classification}))}),
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
document = st.one_of(
    st.lists(feature, max_size=5),
    st.fixed_dictionaries({"type": st.just("FeatureCollection"),
                           "features": st.one_of(st.lists(feature, max_size=5), st.none())}),
    feature, geometry, st.dictionaries(st.text(max_size=4), st.integers(), max_size=3))


@FUZZ
@given(doc=document)
def test_geojson_reader_never_raises_anything_but_a_typed_error(tmp_path, doc):
    path = tmp_path / "ann.geojson"
    path.write_text(json.dumps(doc))
    try:
        annotations = read_annotations(path)
    except WsiSatError:
        return
    for a in annotations:
        assert a.geometry.is_valid and a.geometry.area > 0
    try:
        targets, negatives, chosen = split_by_class(annotations, None, "ann.geojson")
    except WsiSatError:
        return
    assert targets and all(t.class_name == chosen for t in targets)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_geojson_reader_on_arbitrary_bytes(tmp_path, raw):
    path = tmp_path / "ann.geojson"
    path.write_bytes(raw)
    with pytest.raises(WsiSatError):
        read_annotations(path)


keys = st.sampled_from(["sat.matching.top_k", "wsi.tile_px", "sat.decode.mode", "runtime.device",
                        "sat", "wsi", "bogus", "sat.bogus", "wsi.class_color", "", ".", "a..b",
                        "sat.calibration.thresholds", "sat.open_set.quantile"])
values = st.one_of(st.text(max_size=12), st.integers(-5, 5000).map(str),
                   st.sampled_from(["nan", "inf", "-1", "[1, 2]", "{a: 1}", "!!python/object:os.system",
                                    "null", "true", "map", "[0, 180, 80]", "1e9", "'", "[[", "0.5"]))


@FUZZ
@given(assignments=st.lists(st.tuples(keys, values, st.booleans()), max_size=4))
def test_set_parser_gives_a_config_or_a_typed_error(assignments):
    overrides = [f"{k}={v}" if eq else f"{k}{v}" for k, v, eq in assignments]
    try:
        cfg = load_config(None, overrides)
    except WsiSatError:
        return
    assert cfg.wsi.tile_px >= 64  # the model validated it


@FUZZ
@given(text=st.text(max_size=300))
def test_config_file_gives_a_config_or_a_typed_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except WsiSatError:
        pass


boxes = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40),
                           st.integers(1, 40), st.integers(0, 3), st.integers(1, 5)),
                 min_size=1, max_size=12)


def _objects(specs):
    out = []
    for x, y, w, h, tile, label in specs:
        poly = box(x, y, x + w, y + h)
        if label % 2:  # some concave shapes with a notch
            poly = poly.difference(box(x + w / 4, y, x + w / 2, y + h / 2))
        for p in getattr(poly, "geoms", [poly]):
            out.append(TileObject(label + 10 * tile, tile, p, 0.5, p.area))
    return out


@FUZZ
@given(specs=boxes)
def test_merged_regions_are_valid_and_cover_the_union(specs):
    objs = _objects(specs)
    merged = merge_regions(objs)
    union = shapely.union_all([o.polygon for o in objs])
    for o in merged:
        assert isinstance(o.polygon, Polygon) and o.polygon.is_valid and o.polygon.area > 0
        assert o.polygon.exterior.is_ccw  # QuPath's winding: exterior counter-clockwise
    total = shapely.union_all([o.polygon for o in merged])
    assert abs(total.area - union.area) < 1e-6 * max(1.0, union.area)
    # parts do not overlap
    assert abs(sum(o.polygon.area for o in merged) - total.area) < 1e-6 * max(1.0, total.area)


@FUZZ
@given(specs=boxes)
def test_merged_instances_are_valid_and_map_every_label(specs):
    objs = _objects(specs)
    merged, mapping = merge_instances(objs)
    for o in merged:
        assert o.polygon.is_valid and o.polygon.area > 0
    assert set(mapping) <= {o.label for o in objs}
    assert set(mapping.values()) <= {o.label for o in merged}


@FUZZ
@given(mask=st.lists(st.lists(st.booleans(), min_size=12, max_size=12), min_size=12,
                     max_size=12))
def test_tile_polygons_are_valid_for_any_mask(mask):
    m = np.repeat(np.repeat(np.array(mask, bool), 3, axis=0), 3, axis=1)
    objs = tile_objects(m, None, m.astype(np.float32), 0, (5, 7), Scale(0.5, 0.5), 0.5)
    for o in objs:
        assert o.polygon.is_valid and o.polygon.area > 0
    assert abs(sum(o.area_px for o in objs) - m.sum()) <= m.sum() * 0.01 + 1e-9
