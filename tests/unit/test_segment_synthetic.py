"""The whole method on synthetic images where the right answer is known (fast fake SAM)."""

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import blobs_image
from wsi_sat.errors import ReferenceError
from wsi_sat.sat.decode import mask_nms
from wsi_sat.sat.metrics import dice, iou


@pytest.mark.parametrize("mode", ["map", "union", "instances"])
def test_segments_shifted_and_rescaled_copies(fake_segmenter, mode):
    fake_segmenter.config.sat.decode.mode = mode
    ref_img, ref_mask = blobs_image(0)
    reference = fake_segmenter.prepare_reference([(ref_img, ref_mask)])
    assert reference.calibration.mode == mode
    targets = [blobs_image(1), blobs_image(2, size=(260, 180), radius=(18, 30)),
               blobs_image(3, size=(150, 300), n=8, radius=(8, 14))]
    results = fake_segmenter.segment([t[0] for t in targets], reference)
    # map mode alone resolves the ~19 px patch grid: small discs (r 8-14 px) lose their rims;
    # union mode's sparse points cannot reach eight separate small objects (instances can)
    floors = [0.85, 0.85, {"map": 0.7, "union": 0.3, "instances": 0.7}[mode]]
    for (img, truth), res, floor in zip(targets, results, floors):
        assert res.mask.shape == truth.shape  # original size, never the working size
        assert dice(res.mask, truth) > floor, (mode, dice(res.mask, truth))
    if mode == "instances":
        assert results[2].labels is not None and results[2].labels.max() >= 3


def test_auto_mode_is_chosen_by_self_calibration(fake_segmenter):
    ref_img, ref_mask = blobs_image(0, n=10, radius=(8, 12))
    reference = fake_segmenter.prepare_reference([(ref_img, ref_mask)])
    cal = reference.calibration
    assert cal.mode in ("map", "union")
    assert {"mode_map_dice", "mode_union_dice"} <= set(cal.scores)
    assert cal.scores[f"mode_{cal.mode}_dice"] == max(
        cal.scores[f"mode_{m}_dice"] for m in ("map", "union"))


def test_a_reference_of_few_or_large_objects_is_never_split(fake_segmenter):
    """One region (an epidermis, a tumour) or a few glands are never split into instances:
    the automatic mode counts objects only for references of many small ones."""
    assert fake_segmenter.prepare_reference([blobs_image(0, n=2)]).calibration.mode != \
        "instances"
    large = fake_segmenter.prepare_reference([blobs_image(0, size=(200, 240), n=40,
                                                          radius=(30, 40))])
    assert large.calibration.mode != "instances"


def test_many_small_objects_are_counted(fake_segmenter):
    """A reference of many small objects (nuclei): the automatic mode splits the map's
    foreground into one label per object, at the reference objects' size."""
    img, mask = blobs_image(0, size=(200, 240), n=45, radius=(4, 6))
    ref = fake_segmenter.prepare_reference([(img, mask)])
    assert ref.calibration.mode == "instances" and ref.objects.count > 20
    target, truth = blobs_image(7, size=(200, 240), n=45, radius=(4, 6))
    res = fake_segmenter.segment([target], ref)[0]
    assert res.labels is not None and res.labels.max() > 10
    _, n_true = ndimage.label(truth)
    assert abs(int(res.labels.max()) - n_true) / n_true < 0.5


def test_target_without_the_structure_gives_an_empty_mask(fake_segmenter):
    ref_img, ref_mask = blobs_image(0)
    reference = fake_segmenter.prepare_reference([(ref_img, ref_mask)])
    empty = np.zeros((180, 200, 3), np.uint8) + np.array([235, 190, 210], np.uint8)
    res = fake_segmenter.segment([empty], reference)[0]
    assert res.mask.sum() == 0


def test_each_image_is_encoded_once(fake_segmenter, fake_engine):
    # regression (GBMSeg): each image went through the encoder twice (features, then SAM)
    ref_img, ref_mask = blobs_image(0)
    reference = fake_segmenter.prepare_reference([(ref_img, ref_mask)])
    before = fake_engine.encoded_images
    fake_segmenter.segment([blobs_image(1)[0], blobs_image(2)[0]], reference)
    assert fake_engine.encoded_images - before == 2


def test_several_references_are_pooled(fake_segmenter):
    refs = [blobs_image(0), blobs_image(5, n=3)]
    reference = fake_segmenter.prepare_reference(refs)
    assert set(np.unique(reference.ref_ids)) == {0, 1}
    img, truth = blobs_image(7)
    assert dice(fake_segmenter.segment([img], reference)[0].mask, truth) > 0.85


@pytest.mark.parametrize("across", [False, True])
def test_several_references_calibrate_as_one_unless_asked_across(fake_segmenter, monkeypatch,
                                                                 across):
    """Each reference view is scored against the whole bank less its neighbourhood (as with
    one reference); only sat.calibration.across_references leaves its whole reference out."""
    from wsi_sat.config import load_config
    from wsi_sat.sat import calibrate

    seen = []
    real = calibrate.leave_out_match

    def spy(view, ref, cfg, whole_reference=False, **kw):
        seen.append(whole_reference)
        return real(view, ref, cfg, whole_reference, **kw)

    monkeypatch.setattr(calibrate, "leave_out_match", spy)
    cfg = load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16",
                             f"sat.calibration.across_references={str(across).lower()}"])
    seg = fake_segmenter.with_config(cfg)
    seg.prepare_reference([blobs_image(0), blobs_image(5, n=3)])
    assert seen and set(seen) == {across}
    seen.clear()
    seg.prepare_reference([blobs_image(0)])  # one reference: never across
    assert seen and set(seen) == {False}


@pytest.mark.parametrize(
    "mask, words",
    [
        (np.zeros((200, 240), bool), "empty"),
        (np.ones((200, 240), bool), "whole image"),
        (np.ones((100, 100), bool), "same size"),
    ],
)
def test_bad_reference_masks(fake_segmenter, mask, words):
    img, _ = blobs_image(0)
    with pytest.raises(ReferenceError, match=words):
        fake_segmenter.prepare_reference([(img, mask)])


def test_mask_nms_removes_duplicates():
    a = np.zeros((3, 10, 10), bool)
    a[0, :5] = True
    a[1, :5] = True
    a[1, 5] = True
    a[2, 7:] = True
    kept = mask_nms(a, np.array([0.9, 0.8, 0.7]), 0.5)
    assert sorted(kept.tolist()) == [0, 2]


def test_metrics():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
