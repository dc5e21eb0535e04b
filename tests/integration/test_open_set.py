"""Open set on synthetic slides where the answer is known: tissue the reference never showed
stays empty, the target is still found (fast fake SAM)."""

import json

import numpy as np
import pytest

from tests.conftest import blobs_image
from wsi_sat import api
from wsi_sat.config import OpenSetConfig, load_config
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.reference import Reference
from wsi_sat.sat.open_set import held_out_fg_similarity, slide_background, with_background
from wsi_sat.segmenter import Segmenter
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff
from wsi_sat.writers.ome_zarr import read_level

MPP = 0.5


def novel_tissue(seed, size=(200, 240)):
    """A bluish texture the blob reference never showed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((*size, 3), np.float32) + np.array([120, 150, 200])
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.zeros(size, bool)


def _run(fake_engine, path, out, open_set: bool, mode="map", extra: tuple[str, ...] = ()):
    cfg = load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16",
                             f"sat.decode.mode={mode}", "wsi.tile_px=256", "wsi.overlap_px=32",
                             "wsi.min_tissue_area_um2=100", "wsi.pyramid_min_px=64",
                             f"sat.open_set.enabled={str(open_set).lower()}",
                             f"sat.open_set.slide_decision={str(open_set).lower()}",
                             "sat.open_set.min_cluster_patches=5", *extra])
    seg = Segmenter(fake_engine, SamEncoderFeatures(), cfg)
    ref = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference("blobs", *blobs_image(0), "array")]))
    api.run_slide(path, ref, seg, out_dir=out)
    stem = path.name.split(".")[0]
    return (read_level(out / f"{stem}.ome.zarr", 0) > 0,
            json.loads((out / f"{stem}.run.json").read_text()))


@pytest.mark.parametrize("mode", ["map", "union"])
def test_tissue_the_reference_never_showed_stays_empty(fake_engine, tmp_path, mode):
    cells = [blobs_image(10 + i, n=4) for i in range(3)] + [novel_tissue(i) for i in range(6)]
    image, truth = mosaic(cells, cols=3, cell_hw=(200, 240), gap_px=40)
    novel = np.zeros(truth.shape, bool)
    for i in range(3, 9):
        r, c = divmod(i, 3)
        novel[40 + r * 240 : 40 + r * 240 + 200, 40 + c * 280 : 40 + c * 280 + 240] = True
    path = tmp_path / "mixed.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    closed, run_closed = _run(fake_engine, path, tmp_path / "closed", False, mode)
    opened, run_open = _run(fake_engine, path, tmp_path / "open", True, mode)
    if mode == "map":  # the two-class decision paints the unseen tissue
        assert closed[novel].mean() > 0.5
    assert opened[novel].mean() < 0.01
    dice = 2 * (opened & truth).sum() / (opened.sum() + truth.sum())
    assert dice > 0.8
    info = run_open["open_set"]
    assert info["enabled"] and info["background"]["novel_clusters"] >= 1
    assert run_closed["open_set"] == {"enabled": False}


def test_a_target_free_slide_comes_out_empty_and_without_a_halo(fake_engine, tmp_path):
    image, _ = mosaic([novel_tissue(20 + i) for i in range(4)], cols=2, cell_hw=(200, 240),
                      gap_px=60)
    path = tmp_path / "free.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    pred, _ = _run(fake_engine, path, tmp_path / "o", True)
    assert pred.mean() < 0.002


def test_held_out_similarity_splits_each_reference_into_halves():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(40, 8)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    labels = np.r_[np.ones(30, np.int8), np.zeros(10, np.int8)]
    xy = np.c_[np.arange(40) * 10.0, np.zeros(40)].astype(np.float32)
    one = held_out_fg_similarity(bank, labels, xy, np.zeros(40, np.int32), top_k=3)
    assert one.keys() == {0} and one[0].shape == (30,)  # every fg patch, against the other half
    left = xy[labels == 1, 0] < np.median(xy[labels == 1, 0])
    fg = bank[labels == 1]
    want = np.sort(fg[left] @ fg[~left].T, axis=1)[:, -3:].mean(axis=1)
    assert np.allclose(one[0][: left.sum()], want, atol=1e-6)
    ids = np.r_[np.zeros(15), np.ones(25)].astype(int)  # reference 1: 15 fg and 10 bg patches
    two = held_out_fg_similarity(bank, labels, xy, ids, top_k=3)
    assert two.keys() == {0, 1} and two[0].shape == (15,) and two[1].shape == (15,)
    own = labels.astype(bool) & (ids == 1)
    a = xy[own, 0] < np.median(xy[own, 0])
    f1 = bank[own]
    want = np.sort(f1[a] @ f1[~a].T, axis=1)[:, -3:].mean(axis=1)
    assert np.allclose(two[1][: a.sum()], want, atol=1e-6)  # never against reference 0


def test_the_open_threshold_pools_each_examples_halves_never_across_examples(fake_segmenter):
    """The open threshold comes from each example's halves against each other: adding an
    unlike example does not pull it down (across examples it would fall, and with it the
    tissue called never shown)."""
    from wsi_sat.config import OpenSetConfig
    from wsi_sat.sat.open_set import open_threshold

    one = fake_segmenter.prepare_reference([blobs_image(0)])
    unlike = _variant_blobs(5)
    two = fake_segmenter.prepare_reference([blobs_image(0), unlike])
    cfg = OpenSetConfig()
    sims = held_out_fg_similarity(two.bank, two.labels, two.pos_xy, two.ref_ids, 10)
    pooled = np.quantile(np.concatenate(list(sims.values())), cfg.quantile)
    assert open_threshold(two, cfg, 10) == pytest.approx(pooled)
    across = (two.bank[(two.labels == 1) & (two.ref_ids == 0)]
              @ two.bank[(two.labels == 1) & (two.ref_ids == 1)].T).max(axis=1)
    assert open_threshold(two, cfg, 10) > np.quantile(across, cfg.quantile)
    assert open_threshold(one, cfg, 10) is not None


def _variant_blobs(seed):
    img, m = blobs_image(seed, n=3)
    img = img.astype(np.float32)
    img[m] = (40, 110, 100)
    return img.astype(np.uint8), m


def test_slide_background_takes_novel_clusters_only():
    rng = np.random.default_rng(1)
    target = rng.normal(0, 0.05, (300, 4)) + [1, 0, 0, 0]
    unseen = rng.normal(0, 0.05, (300, 4)) + [0, 0, 1, 0]
    feats = np.concatenate([target, unseen]).astype(np.float32)
    shown = np.r_[np.full(300, 0.3), np.full(300, -0.2)]
    margin = np.r_[np.full(300, 0.05), np.full(300, 0.01)]  # unseen: above the threshold
    cfg = OpenSetConfig(clusters=4, min_cluster_patches=10, max_background_patches=1000)
    idx, info = slide_background(feats, shown, margin, 0.02, cfg, seed=0)
    assert set(idx.tolist()) == set(range(300, 600))
    assert info["novel_fraction"] == pytest.approx(0.5)
    # the target is never background, even where its similarity dips
    margin[:300] = 0.05
    idx, _ = slide_background(feats, shown, margin, 0.0, cfg, seed=0)
    assert idx.min() >= 300 if len(idx) else True


def test_slide_background_restarts_on_threads_give_the_same_patches():
    rng = np.random.default_rng(4)
    feats = rng.normal(0, 1, (900, 6)).astype(np.float32)
    shown = rng.uniform(-0.3, 0.3, 900)
    margin = rng.uniform(-0.05, 0.05, 900)
    cfg = OpenSetConfig(clusters=12, min_cluster_patches=10, max_background_patches=10000,
                        restarts=5)
    one, info_one = slide_background(feats, shown, margin, 0.0, cfg, seed=3)
    from wsi_sat.runtime.lanes import lent_threads

    with lent_threads(2) as workers:
        two, info_two = slide_background(feats, shown, margin, 0.0, cfg, seed=3,
                                         workers=workers)
    assert len(one) and np.array_equal(one, two) and info_one == info_two


def test_with_background_appends_unlabelled_background(fake_segmenter):
    ref = fake_segmenter.prepare_reference([blobs_image(0)])
    extra = ref.bank[:5]
    out = with_background(ref, extra)
    assert len(out.bank) == len(ref.bank) + 5 and (out.labels[-5:] == 0).all()
    assert (out.ref_ids[-5:] == -1).all() and np.isnan(out.pos_xy[-5:]).all()
    assert with_background(ref, extra[:0]) is ref


def test_survey_tiles_are_encoded_once_and_outputs_do_not_change(fake_engine, tmp_path,
                                                                monkeypatch):
    """In this process the batches reuse the survey's encoder outputs: every tile is encoded
    once, and the outputs equal a run that encodes the survey tiles again."""
    from wsi_sat.pipeline import run as run_module

    cells = [blobs_image(10 + i, n=4) for i in range(3)] + [novel_tissue(i) for i in range(3)]
    image, _ = mosaic(cells, cols=3, cell_hw=(200, 240), gap_px=40)
    path = tmp_path / "mixed.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)

    def encoded_tiles(out):  # in memory: no store to read the tiles back from
        before = fake_engine.encoded_images
        pred, record = _run(fake_engine, path, out, True, extra=("wsi.keep_encodings=false",))
        return pred, record, fake_engine.encoded_images - before

    reused, record, n_reused = encoded_tiles(tmp_path / "reused")
    original = run_module.survey_slide
    monkeypatch.setattr(run_module, "survey_slide",
                        lambda *a, **k: original(*a, **{**k, "keep_encodings": False}))
    again, _, n_again = encoded_tiles(tmp_path / "again")
    tiles, surveyed = record["tiles"]["segmented"], record["open_set"]["tiles"]
    assert surveyed >= 1 and n_again - n_reused == surveyed
    assert np.array_equal(reused, again)
    assert n_reused - tiles < n_again - tiles  # the reference views are encoded in both


def test_tiles_encoded_ahead_during_the_survey_are_reused(fake_engine, tmp_path, monkeypatch):
    """Two lanes, a survey of 2 tiles: while the survey is clustered the lanes encode the next
    tile each; the batches reuse those encodings too (every tile encoded once) and the outputs
    equal a run that encodes every tile in its batch."""
    import threading

    from wsi_sat.pipeline import run as run_module

    cells = [blobs_image(20 + i, n=4) for i in range(3)] + [novel_tissue(i) for i in range(3)]
    image, _ = mosaic(cells, cols=3, cell_hw=(200, 240), gap_px=40)
    path = tmp_path / "mixed.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    lock, count = threading.Lock(), [0]
    encode = fake_engine._encode

    def counted(images, scale=None):
        with lock:  # the lanes encode side by side
            count[0] += len(images)
        return encode(images, scale)

    monkeypatch.setattr(fake_engine, "_encode", counted)
    extra = ("wsi.survey_tiles=2", "runtime.lanes=2", "wsi.keep_encodings=false")

    def encoded_tiles(out):
        before = count[0]
        pred, record = _run(fake_engine, path, out, True, extra=extra)
        return pred, record, count[0] - before

    original = run_module.survey_slide
    in_survey = []

    def survey(*a, **k):
        before = count[0]
        out = original(*a, **k)
        in_survey.append((count[0] - before, len(out.encodings)))
        return out

    monkeypatch.setattr(run_module, "survey_slide", survey)
    reused, record, n_reused = encoded_tiles(tmp_path / "reused")
    monkeypatch.setattr(run_module, "survey_slide",
                        lambda *a, **k: original(*a, **{**k, "keep_encodings": False}))
    again, _, n_again = encoded_tiles(tmp_path / "again")
    tiles, surveyed = record["tiles"]["segmented"], record["open_set"]["tiles"]
    assert surveyed == 2 and tiles >= 4
    # the survey encoded its 2 tiles and one more per lane, all kept for the batches
    assert in_survey == [(surveyed + 2, surveyed + 2)]
    assert n_again - n_reused == surveyed  # so every tile was encoded once
    assert np.array_equal(reused, again)
