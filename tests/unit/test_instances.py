"""Objects counted: touching discs split at their necks, every disc found once; instance-label
reference masks read as labels."""

import numpy as np
from PIL import Image

from wsi_sat.config import default_config
from wsi_sat.io.image import read_labels, read_mask
from wsi_sat.sat.instances import object_areas, reference_objects, split_instances

_DECODE = default_config().sat.decode
SPLIT = {"seed_distance_radii": _DECODE.seed_distance_radii, "smooth_radii": _DECODE.smooth_radii}


def _discs(centres, radius=15, shape=(200, 300)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = i
    return labels


def test_touching_discs_are_split_at_the_neck_and_found_once():
    centres = [(50, 50), (50, 76), (120, 200), (148, 228), (100, 120), (170, 40)]
    truth = _discs(centres)
    labels = split_instances(truth > 0, 15, 20, **SPLIT)
    assert labels.max() == len(centres)
    found = [labels[cy, cx] for cy, cx in centres]
    assert len(set(found)) == len(centres) and 0 not in found  # one label per disc
    for i, (cy, cx) in enumerate(centres, start=1):  # and each label is its disc
        own = labels == labels[cy, cx]
        assert (own & (truth == i)).sum() / (own | (truth == i)).sum() > 0.8


def test_a_small_lonely_object_is_kept_and_specks_are_dropped():
    fg = np.zeros((60, 60), bool)
    fg[10:14, 10:14] = True  # 16 px: no room for a peak at radius 15, still an object
    fg[40, 40] = True  # a speck
    labels = split_instances(fg, 15, 5, **SPLIT)
    assert labels.max() == 1 and labels[12, 12] == 1 and labels[40, 40] == 0


def test_reference_objects_from_labels_or_components():
    labels = _discs([(50, 50), (50, 76), (150, 150)])
    assert len(object_areas(labels)) == 3  # touching discs stay apart as labels
    assert len(object_areas(labels > 0)) == 2  # ... and merge as a binary mask
    sizes = reference_objects([labels], [0.5], (0.02, 0.98))
    assert sizes.count == 3 and abs(sizes.radius - 15 * 0.5) < 1.0  # in encoder-input px
    assert reference_objects([np.zeros((10, 10), bool)], [1.0], (0.1, 0.9)) is None


def test_instance_label_masks_are_read_as_labels(tmp_path):
    labels = _discs([(50, 50), (50, 76), (150, 150)]).astype(np.uint16)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    Image.fromarray((labels > 0).astype(np.uint8) * 255).save(tmp_path / "binary.png")
    assert np.array_equal(read_labels(tmp_path / "labels.png"), labels)
    assert np.array_equal(read_mask(tmp_path / "labels.png"), labels > 0)
    assert read_labels(tmp_path / "binary.png") is None


def test_shape_measures_equal_regionprops_and_one_label_is_one_object():
    """Area, perimeter, axes, eccentricity and solidity of polygons (µm) as scikit-image's
    regionprops measures the same objects; a label of two pieces is one MultiPolygon row."""
    from skimage.measure import regionprops

    from wsi_sat.geometry import Scale
    from wsi_sat.stitch.measures import shape_measures
    from wsi_sat.stitch.polygons import tile_objects
    from wsi_sat.writers.tables import objects_table

    yy, xx = np.mgrid[:200, :300]
    labels = np.zeros((200, 300), np.int32)
    labels[((yy - 60) / 30.0) ** 2 + ((xx - 80) / 18.0) ** 2 < 1] = 7  # an ellipse
    labels[120:160, 150:230] = 9  # a rectangle ...
    labels[130:150, 240:260] = 9  # ... and a second piece of the same object
    objs = tile_objects(labels > 0, labels, np.ones(labels.shape, np.float32), 0, (0, 0),
                        Scale(0.5, 0.5), 0.0)
    assert sorted(o.label for o in objs) == [7, 9]  # one object per label
    nine = next(o for o in objs if o.label == 9)
    assert nine.polygon.geom_type == "MultiPolygon" and nine.area_px == 40 * 80 + 20 * 20
    got = shape_measures([o.polygon for o in objs], Scale(0.5, 0.5))
    props = {p.label: p for p in regionprops(labels)}
    for i, o in enumerate(objs):
        p = props[o.label]
        assert abs(got["area_um2"][i] - p.area * 0.25) / (p.area * 0.25) < 0.02
        assert abs(got["major_axis_um"][i] - p.axis_major_length * 0.5) < 1.0
        assert abs(got["minor_axis_um"][i] - p.axis_minor_length * 0.5) < 1.0
        assert abs(got["eccentricity"][i] - p.eccentricity) < 0.03
    seven = next(i for i, o in enumerate(objs) if o.label == 7)
    assert got["solidity"][seven] > 0.97  # an ellipse is convex
    assert 0.8 < got["solidity"][objs.index(nine)] < 0.95  # the gap between its pieces
    table = objects_table(objs, "Nucleus", Scale(0.5, 0.5), instances=True)
    assert len(table) == 2 and sorted(table["label"]) == [7, 9]
