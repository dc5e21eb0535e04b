"""The glass rule and the slide's decision, on synthetic arrays where the answer is known."""

import numpy as np

from tests.conftest import blobs_image
from wsi_sat.config import MatchingConfig
from wsi_sat.sat.glass import anchored_target, glass_pixels
from wsi_sat.sat.open_set import slide_decision
from wsi_sat.sat.segment import segment_image
from wsi_sat.sat.transduce import LinearDecision, fit_decision, self_train

GLASS = (245.0, 245.0, 245.0)
PATCH = (16.0, 16.0)


def _tile():
    """A 256 px tile: glass on the left third, tissue (pink) elsewhere; a target gland
    (purple ring, 80 px) with a white lumen (40 px) in the tissue, and a white hole (50 px)
    in the tissue that is not the target."""
    img = np.full((256, 256, 3), GLASS, np.uint8)
    img[:, 86:] = (230, 150, 200)
    yy, xx = np.mgrid[:256, :256]
    ring = (yy - 64) ** 2 + (xx - 170) ** 2 < 40**2
    lumen = (yy - 64) ** 2 + (xx - 170) ** 2 < 20**2
    hole = (yy - 190) ** 2 + (xx - 190) ** 2 < 25**2
    img[ring] = (120, 60, 150)
    img[lumen | hole] = GLASS
    tissue = np.zeros((256, 256), bool)
    tissue[:, 86:] = True  # tissue detection fills both holes
    return img, tissue, ring, lumen, hole


def test_glass_pixels_by_distance_to_the_slides_glass():
    img, _, ring, lumen, hole = _tile()
    glass = glass_pixels(img, GLASS, 30.0, 2)
    assert glass[:, :80].all() and glass[lumen].mean() > 0.9 and glass[hole].mean() > 0.9
    assert not glass[ring & ~lumen].any()


def test_glass_is_kept_only_where_target_on_tissue_encloses_it():
    img, tissue, ring, lumen, hole = _tile()
    tissue_px = tissue & ~glass_pixels(img, GLASS, 30.0, 2)
    # the matching map calls the gland, its lumen, the hole and the glass beside tissue target
    pred = ring | lumen | hole
    pred[:, 60:86] = True  # a halo of glass along the tissue edge
    out = anchored_target(pred, tissue_px, np.ones_like(tissue), PATCH, close_px=24.0)
    assert out[ring].mean() > 0.9 and out[lumen].all()  # the gland with its lumen
    assert not out[hole].any()  # a white hole of non-target tissue
    assert not out[:, 60:86].any()  # no halo
    # nothing predicted on tissue-coloured patches: nothing at all
    only_glass = anchored_target(hole | lumen, tissue_px, np.ones_like(tissue), PATCH, 24.0)
    assert not only_glass.any()


def test_fit_decision_needs_both_sides_and_matches_self_train():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 0.1, (60, 4)) + [1, 0, 0, 0],
                            rng.normal(0, 0.1, (60, 4)) + [0, 1, 0, 0]]).astype(np.float32)
    margin = np.r_[np.full(60, 0.1), np.full(60, -0.1)].astype(np.float32)
    cfg = MatchingConfig()
    pos, neg = margin > 0.03, margin < -0.03
    d = fit_decision(feats, pos, neg, 0.0, cfg)
    assert isinstance(d, LinearDecision)
    assert (d.margin(feats[:60]) > 0).all() and (d.margin(feats[60:]) < 0).all()
    assert np.allclose(self_train(feats, margin, 0.0, cfg), d.margin(feats), atol=1e-5)
    assert fit_decision(feats, pos, np.zeros_like(neg), 0.0, cfg) is None


def test_the_slides_decision_scores_every_tile_alike(fake_segmenter):
    """With a slide's decision a tile without the target stays empty: no classifier is refitted
    on the tile to find its "most target-like part"."""
    ref = fake_segmenter.prepare_reference([blobs_image(0)])
    # the survey: the reference's own bank stands in for the slide's patches
    decision, info = slide_decision(ref, ref.bank, np.where(ref.labels == 1, 0.2, -0.2),
                                    fake_segmenter.sat.matching, 0, 0.5)
    assert decision is not None and info["fitted"] and info["bank_target"] > 0
    slide_ref = ref.__class__(**{**ref.__dict__, "decision": decision})
    engine, backbone = fake_segmenter.engine, fake_segmenter.backbone
    target_free = np.zeros((200, 240, 3), np.uint8) + np.array([200, 120, 170], np.uint8)
    target_free += np.random.default_rng(3).integers(0, 20, target_free.shape, dtype=np.uint8)
    for image, want_empty in ((blobs_image(5)[0], False), (target_free, True)):
        enc = engine.encode([image])[0]
        grid = backbone.grids([image], [enc])[0]
        res = segment_image(engine, enc, image, grid, slide_ref, fake_segmenter.sat)
        assert (res.mask.mean() < 0.01) if want_empty else (res.mask.mean() > 0.05)


def test_device_map_equals_the_per_image_map(fake_segmenter):
    """The batched map of a slide's decision (wsi_sat.sat.device_map, here on the CPU) gives the
    per-image path's probabilities and masks."""
    import torch

    from wsi_sat.sat.device_map import patch_colour_t
    from wsi_sat.sat.patches import patch_colour
    from wsi_sat.sat.segment import decided_maps, decided_maps_fit, decided_result

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    want = np.stack([patch_colour(im, (4, 6), (16.0, 16.0)) for im in noise])
    got = patch_colour_t(torch.from_numpy(noise), 16).numpy()
    assert np.allclose(got, want, atol=2e-4)

    ref = fake_segmenter.prepare_reference([blobs_image(0)])
    ref = ref.with_calibration(ref.calibration.__class__(
        ref.calibration.threshold, "map", False, {}, ref.calibration.open_threshold), None)
    decision, _ = slide_decision(ref, ref.bank, np.where(ref.labels == 1, 0.2, -0.2),
                                 fake_segmenter.sat.matching, 0, 0.5)
    slide_ref = ref.__class__(**{**ref.__dict__, "decision": decision})
    engine, backbone = fake_segmenter.engine, fake_segmenter.backbone
    tiles = [blobs_image(s, size=(256, 256))[0] for s in (5, 6, 7)]
    encoded = engine.encode(tiles, 1.0)
    assert decided_maps_fit(encoded, tiles, slide_ref, backbone.name)
    probs, patch = decided_maps(encoded, tiles, slide_ref, fake_segmenter.sat)
    batched = [decided_result(p, patch, fake_segmenter.sat, None, {}) for p in probs]
    for image, enc, got in zip(tiles, encoded, batched):
        grid = backbone.grids([image], [enc])[0]
        want = segment_image(engine, enc, image, grid, slide_ref, fake_segmenter.sat)
        assert np.abs(got.prob - want.prob).max() < 1e-3
        assert (got.mask != want.mask).mean() < 1e-3 and got.mask.any()


def test_segmenter_cleans_decided_maps_up_in_parallel_like_the_per_image_path(fake_engine,
                                                                              fast_config):
    """On an accelerator the segmenter computes decided maps per batch and cleans each tile up
    on a thread pool while the device goes on; the results (in input order) equal the per-image
    path. The fake engine's tensors stay on the CPU; only its device type says accelerator."""
    import torch

    from wsi_sat.models.features import SamEncoderFeatures
    from wsi_sat.segmenter import Segmenter

    cpu_seg = Segmenter(fake_engine, SamEncoderFeatures(), fast_config)
    ref = cpu_seg.prepare_reference([blobs_image(0)])
    ref = ref.with_calibration(ref.calibration.__class__(
        ref.calibration.threshold, "map", False, {}, ref.calibration.open_threshold), None)
    decision, _ = slide_decision(ref, ref.bank, np.where(ref.labels == 1, 0.2, -0.2),
                                 cpu_seg.sat.matching, 0, 0.5)
    slide_ref = ref.__class__(**{**ref.__dict__, "decision": decision})
    tiles = [blobs_image(s, size=(256, 256))[0] for s in range(10, 21)]  # 11: two batches
    want = cpu_seg.segment(tiles, slide_ref, encode_scale=1.0)
    fake_engine.device = torch.device("cuda")  # the segmenter takes the accelerator's path
    got = cpu_seg.segment(iter(tiles), slide_ref, encode_scale=1.0)
    assert len(got) == len(want) == 11
    for g, w in zip(got, want):
        assert np.abs(g.prob - w.prob).max() < 1e-3 and (g.mask != w.mask).mean() < 1e-3
        assert "postprocess" in g.timings_s and g.mode == "map"
        assert "features" not in g.timings_s and "features" in w.timings_s  # the two paths
