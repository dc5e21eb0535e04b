"""`wsi-sat view`'s layers: the slide's pyramid and the labels over it, visible, named by the
class, in µm so that they align (napari itself is not needed to check what it is given)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reliability.test_runs import _run, slide  # noqa: F401 - the fixture
from wsi_sat.errors import RunStateError
from wsi_sat.writers.napari_layers import slide_layers


def test_the_slide_and_its_visible_labels_align(slide, fake_engine, tmp_path):  # noqa: F811
    out = tmp_path / "o"
    _run(fake_engine, slide, out, "wsi.class_name=Gland")
    image, labels = slide_layers(out, "case.1")
    assert image.kind == "image" and image.kwargs["rgb"] and image.kwargs["name"] == "case.1"
    assert labels.kind == "labels" and labels.kwargs["visible"] is True
    assert labels.kwargs["name"] == "Gland"
    assert labels.kwargs["colormap"][1][:3] != [0, 0, 0]  # the class colour
    # both cover the same micrometres
    h_img, w_img = image.data[0].shape[:2]
    h_lab, w_lab = labels.data[0].shape
    assert h_img * image.kwargs["scale"][0] == pytest.approx(h_lab * labels.kwargs["scale"][0],
                                                             rel=0.01)
    assert w_img * image.kwargs["scale"][1] == pytest.approx(w_lab * labels.kwargs["scale"][1],
                                                             rel=0.01)
    assert np.asarray(labels.data[0]).any()
    # the slide moved away: the labels alone
    moved = tmp_path / "moved.tif"
    slide.rename(moved)
    try:
        [only] = slide_layers(out, "case.1")
        assert only.kind == "labels"
    finally:
        moved.rename(slide)
    with pytest.raises(RunStateError, match="no finished slide"):
        slide_layers(out, "nothing")
