"""Reading QuPath exports: every form QuPath writes, classes, repairs, and clear errors."""

import json

import pytest
from shapely.geometry import MultiPolygon

from wsi_sat.errors import ReferenceError
from wsi_sat.reference.qupath import UNCLASSIFIED, read_annotations, split_by_class


def _square(x, y, s=10):
    return [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]


def _feature(coords, cls=None, kind="Polygon"):
    props = {"objectType": "annotation"}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coords},
            "properties": props}


def _write(tmp_path, data, name="a.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("form", ["array", "collection", "feature", "geometry"])
def test_every_export_form_is_read(tmp_path, form):
    feat = _feature(_square(0, 0), "Gland")
    data = {"array": [feat], "collection": {"type": "FeatureCollection", "features": [feat]},
            "feature": feat, "geometry": feat["geometry"]}[form]
    anns = read_annotations(_write(tmp_path, data))
    assert len(anns) == 1 and anns[0].geometry.area == 100
    assert anns[0].class_name == ("Gland" if form != "geometry" else UNCLASSIFIED)


def test_multipolygons_classes_and_skipped_geometries(tmp_path):
    multi = _feature([_square(0, 0), _square(20, 0)], "Gland", "MultiPolygon")
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]},
             "properties": {}}
    old_style = _feature(_square(50, 50))
    old_style["properties"]["classification"] = "Stroma"  # a plain string (old QuPath)
    anns = read_annotations(_write(tmp_path, [multi, point, old_style]))
    assert [a.class_name for a in anns] == ["Gland", "Stroma"]
    assert isinstance(anns[0].geometry, MultiPolygon) and anns[0].geometry.area == 200


def test_invalid_polygons_are_repaired(tmp_path, caplog):
    bowtie = [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]
    anns = read_annotations(_write(tmp_path, [_feature(bowtie, "Gland")]))
    assert anns[0].geometry.is_valid and anns[0].geometry.area == pytest.approx(50)
    assert "repaired" in caplog.text


@pytest.mark.parametrize("data, words", [
    ([], "no polygon"),
    ({"type": "FeatureCollection", "features": []}, "no polygon"),
    ([_feature([[[0, 0], [1, 1], [0, 0]]])], "no polygon"),  # a 2-point ring: no area
    ({"hello": 1}, "no polygon"),
])
def test_nothing_usable_is_one_clear_error(tmp_path, data, words):
    with pytest.raises(ReferenceError, match=words):
        read_annotations(_write(tmp_path, data))


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(ReferenceError, match="not GeoJSON"):
        read_annotations(bad)
    with pytest.raises(ReferenceError, match="not found"):
        read_annotations(tmp_path / "none.geojson")


def test_target_class_and_negatives():
    anns = read_annotations_from([("Gland", 0), ("Gland", 20), ("Stroma", 40), ("Fat", 60)])
    targets, negatives, chosen = split_by_class(anns, None, "x")
    assert chosen == "Gland" and len(targets) == 2 and len(negatives) == 2  # most frequent
    targets, negatives, chosen = split_by_class(anns, "Stroma", "x")
    assert chosen == "Stroma" and len(targets) == 1 and len(negatives) == 3
    with pytest.raises(ReferenceError, match="no annotation of class 'Tumor'.*Fat, Gland, Stroma"):
        split_by_class(anns, "Tumor", "x")


def test_a_negative_over_the_target_is_refused():
    anns = read_annotations_from([("Gland", 0), ("Stroma", 5)])
    with pytest.raises(ReferenceError, match="overlaps the target"):
        split_by_class(anns, "Gland", "x")


def read_annotations_from(items):
    from shapely.geometry import shape

    from wsi_sat.reference.qupath import Annotation

    return [Annotation(shape({"type": "Polygon", "coordinates": _square(x, 0)}), cls)
            for cls, x in items]
