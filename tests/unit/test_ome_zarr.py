"""The label pyramid: levels equal numpy subsampling; only written chunks are computed; the
store is a valid NGFF 0.4 label image (ome-zarr-models) with nested chunk keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from wsi_sat.stitch.labels import relabel
from wsi_sat.writers.ome_zarr import LabelInfo, build_pyramid, create_level0, open_level0, read_level


def _level0(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "s.ome.zarr"
    arr = create_level0(path, (1000, 700), 64, "uint32")  # (w, h): 11 x 16 chunks, ragged edges
    data = np.zeros((700, 1000), np.uint32)
    data[70:190, 130:260] = 5  # chunks (1..2, 2..4)
    data[650:700, 900:1000] = 9  # the ragged corner chunk (10, 14..15)
    arr[:] = data
    return path, data


def test_levels_are_numpy_subsampling(tmp_path: Path) -> None:
    path, data = _level0(tmp_path)
    written = {(y, x) for y in range(1, 3) for x in range(2, 5)} | {(10, 14), (10, 15)}
    levels = build_pyramid(path, 64, 0.5, "s", written)
    assert levels == 5  # 1000 → 500 → 250 → 125 → 63: the coarsest is at most min_px (64)
    expect = data
    for level in range(1, levels):
        expect = expect[::2, ::2]
        assert np.array_equal(read_level(path, level), expect)
    ms = zarr.open_group(str(path), mode="r").attrs["multiscales"][0]
    assert [d["coordinateTransformations"][0]["scale"][0] for d in ms["datasets"]] == \
        [0.5, 1.0, 2.0, 4.0, 8.0]


def test_only_written_chunks_are_computed_and_relabelled(tmp_path: Path) -> None:
    path, data = _level0(tmp_path)
    written = {(10, 14), (10, 15)}
    relabel(open_level0(path), {5: 3, 9: 4}, written)
    build_pyramid(path, 64, 0.5, "s", written)
    level0, level1 = read_level(path, 0), read_level(path, 1)
    assert (level0[650:, 900:] == 4).all()
    assert (level0[70:190, 130:260] == 5).all()  # not in `written`: left alone
    assert not level1[:150].any()
    assert (level1[325:350, 450:500] == 4).all()


def _validated(path: Path):
    from ome_zarr_models.v04.image_label import ImageLabel

    return ImageLabel.from_zarr(zarr.open_group(str(path), mode="r", zarr_format=2))


def test_region_store_is_valid_ngff_with_the_class_colour_and_nested_chunks(
        tmp_path: Path) -> None:
    path, _ = _level0(tmp_path)
    build_pyramid(path, 64, 0.5, "s", None, LabelInfo.region("Gland", (200, 10, 30)))
    model = _validated(path)
    label = model.attributes.image_label
    assert [(c.label_value, c.rgba) for c in label.colors] == [(1, (200, 10, 30, 255))]
    assert label.properties[0].model_dump(by_alias=True) == {"label-value": 1, "class": "Gland"}
    multiscale = model.attributes.multiscales[0]
    assert multiscale.type == "nearest" and len(multiscale.datasets) == 5
    for level in range(4):
        meta = (path / str(level) / ".zarray").read_text()
        assert '"dimension_separator": "/"' in meta
    assert (path / "0" / "1" / "2").is_file()  # chunk (row 1, column 2): a nested key
    assert not list(path.glob("0/[0-9]*.[0-9]*"))  # no flat "row.column" keys


def test_instance_store_names_every_object_and_fixes_no_colours(tmp_path: Path) -> None:
    path, _ = _level0(tmp_path)
    build_pyramid(path, 64, 0.5, "s", None, LabelInfo.instances("Nucleus", [5, 9]))
    label = _validated(path).attributes.image_label
    assert label.colors is None  # viewers colour each instance apart
    assert [p.model_dump(by_alias=True) for p in label.properties] == [
        {"label-value": 5, "class": "Nucleus", "object": 0},
        {"label-value": 9, "class": "Nucleus", "object": 1}]


def test_metadata_that_breaks_the_spec_is_never_written(tmp_path: Path) -> None:
    import pydantic
    import pytest

    path, _ = _level0(tmp_path)
    bad = LabelInfo([{"label-value": 1, "rgba": [300, 0, 0, 255]}], [{"label-value": 1}])
    with pytest.raises(pydantic.ValidationError):
        build_pyramid(path, 64, 0.5, "s", None, bad)
    assert "image-label" not in zarr.open_group(str(path), mode="r").attrs
