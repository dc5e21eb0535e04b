"""Steering a slide with examples (fast fake SAM): corrections drawn on the result slide are
references, every example added helps and acts on its own kind, a rerun reuses the encodings
(exactly: its outputs equal a fresh run's), and an empty result says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from scipy import ndimage

from tests.conftest import blobs_image
from wsi_sat import api
from wsi_sat.config import load_config
from wsi_sat.geometry import Scale
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.pipeline.advice import slide_warnings
from wsi_sat.reference import Reference
from wsi_sat.segmenter import Segmenter
from wsi_sat.stitch.polygons import tile_objects
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff
from wsi_sat.writers.ome_zarr import read_level

MPP = 0.5
SETTINGS = ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16", "sat.decode.mode=map",
            "wsi.tile_px=256", "wsi.overlap_px=32", "wsi.min_tissue_area_um2=100",
            "wsi.pyramid_min_px=64", "sat.open_set.min_cluster_patches=5"]


def _variant(seed: int, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of another colour: a variant of the target the blob reference never showed."""
    img, m = blobs_image(seed, n=4)
    img = img.astype(np.float32)
    img[m] = np.array(colour) + np.random.default_rng(seed).normal(0, 6, (int(m.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8), m


def _texture(seed: int, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A noisy tissue of the target's hue without its shape: called target at first."""
    rng = np.random.default_rng(seed)
    img = np.zeros((200, 240, 3), np.float32) + np.array(colour)
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.zeros((200, 240), bool)


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """Three cells of the reference's blobs (kind 1), three of a variant (2), three of a
    look-alike texture (3); the slide, its truth and the kind of every pixel."""
    cells = [blobs_image(10 + i, n=4) for i in range(3)]
    cells += [_variant(20 + i, (40, 110, 100)) for i in range(3)]
    cells += [_texture(30 + i, (150, 90, 170)) for i in range(3)]
    image, truth = mosaic(cells, cols=3, cell_hw=(200, 240), gap_px=40)
    kind = np.zeros(truth.shape, np.int8)
    for i in range(9):
        r, c = divmod(i, 3)
        kind[40 + r * 240: 240 + r * 240, 40 + c * 280: 280 + c * 280] = 1 + i // 3
    path = tmp_path_factory.mktemp("variants") / "variants.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    return path, truth, kind


def _features(cls: str, mask: np.ndarray) -> list[dict]:
    objs = tile_objects(mask, None, mask.astype(np.float32), 0, (0, 0), Scale(MPP, MPP), 0.5)
    return [{"type": "Feature", "properties": {"classification": {"name": cls}},
             "geometry": shapely.geometry.mapping(o.polygon)} for o in objs]


def _segmenter(fake_engine, *extra: str) -> Segmenter:
    return Segmenter(fake_engine, SamEncoderFeatures(), load_config(None, [*SETTINGS, *extra]))


def _run(seg: Segmenter, slide: Path, out: Path, geojson: list[Path] = ()) -> np.ndarray:
    request = api.ReferenceRequest(images=[Reference("blobs", *blobs_image(0), "array")],
                                   geojson=list(geojson), slides=[slide] if geojson else [],
                                   class_name="Blob")
    reference = api.prepare_reference(seg, request, out_dir=out)
    api.run_slide(slide, reference, seg, out_dir=out)
    return read_level(out / f"{slide.name.split('.')[0]}.ome.zarr", 0) > 0


def _found(pred: np.ndarray, truth: np.ndarray, kind: np.ndarray, k: int) -> float:
    sel = truth & (kind == k)
    return float((pred & sel).sum() / sel.sum())


def _called(pred: np.ndarray, kind: np.ndarray, k: int) -> float:
    return float((pred & (kind == k)).sum() / (kind == k).sum())


def test_an_example_of_an_unseen_variant_finds_it_and_a_negative_removes_only_its_kind(
        variants, fake_engine, tmp_path):
    path, truth, kind = variants
    seg = _segmenter(fake_engine)
    first = _run(seg, path, tmp_path / "o")
    assert _found(first, truth, kind, 1) > 0.6 and _found(first, truth, kind, 2) < 0.05
    assert _called(first, kind, 3) > 0.5  # the look-alike is called target at first
    gland, _ = ndimage.label(truth & (kind == 2))
    positive = tmp_path / "b.geojson"  # one blob of the variant, outlined on the result
    positive.write_text(json.dumps(_features("Blob", gland == 1)))
    second = _run(seg, path, tmp_path / "o", [positive])
    assert _found(second, truth, kind, 2) > 0.4  # the variant is found now
    assert _found(second, truth, kind, 1) >= _found(first, truth, kind, 1) - 0.02
    negative = np.zeros_like(truth)
    negative[40 + 480 + 50: 40 + 480 + 150, 90: 230] = True  # inside a look-alike cell
    both = tmp_path / "bn.geojson"
    both.write_text(json.dumps(_features("Blob", gland == 1) + _features("Other", negative)))
    third = _run(seg, path, tmp_path / "o", [both])
    assert _called(third, kind, 3) < 0.5 * _called(second, kind, 3)  # its kind is removed
    for k in (1, 2):  # and nothing else
        assert _found(third, truth, kind, k) >= _found(second, truth, kind, k) - 0.02


def test_a_rerun_reuses_every_encoding_and_equals_a_fresh_run(variants, fake_engine,
                                                              tmp_path):
    path, _, _ = variants
    seg = _segmenter(fake_engine)
    first = _run(seg, path, tmp_path / "o")
    before = fake_engine.encoded_images
    again = _run(seg, path, tmp_path / "o")
    assert fake_engine.encoded_images == before  # neither a tile nor a reference view
    run = json.loads((tmp_path / "o" / "variants.run.json").read_text())
    assert run["tiles"]["encoded"] == 0 and run["tiles"]["reused"] == run["tiles"]["segmented"]
    assert run["reference"]["views"] == {"encoded": 0, "reused": 4}
    fresh = _run(_segmenter(fake_engine, "wsi.keep_encodings=false"), path, tmp_path / "f")
    assert np.array_equal(first, again) and np.array_equal(again, fresh)
    assert not (tmp_path / "f" / "encodings").exists()
    for name in ("variants.geojson", "variants.objects.csv"):
        assert (tmp_path / "o" / name).read_bytes() == (tmp_path / "f" / name).read_bytes()


@pytest.mark.parametrize("change", ["slide bytes", "tile grid", "weights"])
def test_a_store_of_other_inputs_is_encoded_afresh_never_mixed(variants, fake_engine, tmp_path,
                                                               change, monkeypatch):
    path, _, _ = variants
    slide = tmp_path / "variants.tif"
    slide.write_bytes(path.read_bytes())
    out = tmp_path / "o"
    _run(_segmenter(fake_engine), slide, out)
    store = out / "encodings" / "variants"
    key = json.loads((store / "store.json").read_text())["key"]
    tiles_before = {p.name for p in store.glob("t*.npy")}
    extra: list[str] = []
    if change == "slide bytes":  # the same path and name, other pixels
        image = np.asarray(__import__("PIL.Image").Image.open(slide).convert("RGB"))
        write_pyramidal_tiff(slide, 255 - image, MPP, tile_px=128, min_px=256)
    elif change == "tile grid":
        extra = ["wsi.tile_px=192"]
    else:
        monkeypatch.setattr(fake_engine, "weights_sha256", "another checkpoint")
    _run(_segmenter(fake_engine, *extra), slide, out)
    run = json.loads((out / "variants.run.json").read_text())
    assert json.loads((store / "store.json").read_text())["key"] != key
    assert run["tiles"]["reused"] == 0 and run["tiles"]["encoded"] == run["tiles"]["segmented"]
    if change != "tile grid":  # the same tile indices: every file was written anew
        assert {p.name for p in store.glob("t*.npy")} == tiles_before


def test_an_empty_result_says_why(variants, fake_engine, tmp_path):
    path, _, kind = variants
    from PIL import Image

    texture_only, _ = mosaic([_texture(40 + i, (120, 150, 200)) for i in range(4)], cols=2,
                             cell_hw=(200, 240), gap_px=40)
    slide = tmp_path / "blue.tif"
    write_pyramidal_tiff(slide, texture_only, MPP, tile_px=128, min_px=256)
    Image.fromarray(blobs_image(0)[0]).save(tmp_path / "ref.png")
    Image.fromarray(blobs_image(0)[1].astype(np.uint8) * 255).save(tmp_path / "ref_mask.png")
    pred = _run(_segmenter(fake_engine), slide, tmp_path / "o")
    assert not pred.any()
    run = json.loads((tmp_path / "o" / "blue.run.json").read_text())
    assert run["warnings"] and "empty result" in run["warnings"][0]
    assert "--reference-geojson" in run["warnings"][0]
    import pandas as pd

    [row] = pd.read_csv(tmp_path / "o" / "summary.csv").to_dict("records")
    assert row["status"] == "done" and "empty result" in row["warnings"]


def test_advice_names_what_to_do():
    empty = {"tissue": {"area_mm2": 2.0}, "objects": 0, "target_area_mm2": 0.0,
             "open_set": {"background": {"novel_fraction": 0.93}},
             "calibration": {"scores": {"threshold_dice": 0.9}}}
    [line] = slide_warnings(empty)
    assert line.startswith("empty result") and "93%" in line and "--mpp" in line
    poor = {**empty, "objects": 5, "target_area_mm2": 0.5,
            "calibration": {"scores": {"threshold_dice": 0.4}}}
    lines = slide_warnings(poor)
    assert any("never shown" in w for w in lines) and any("Dice 0.40" in w for w in lines)
    assert slide_warnings({"tissue": {"area_mm2": 0.0}})[0].startswith("no tissue")
    fine = {**empty, "objects": 5, "target_area_mm2": 0.5,
            "open_set": {"background": {"novel_fraction": 0.3}}}
    assert slide_warnings(fine) == []


def test_repeatable_reference_pairs_and_mixed_inputs_through_the_cli(variants, fake_engine,
                                                                    tmp_path, monkeypatch):
    """--reference-geojson / --reference-slide pairs (the n-th export on the n-th slide), with
    an image reference and a negative image, through the command line; summary.csv carries
    the warnings column."""
    import gzip

    from PIL import Image

    from wsi_sat.cli import app

    path, truth, kind = variants
    gland, _ = ndimage.label(truth & (kind == 2))
    a = tmp_path / "a.geojson"
    a.write_text(json.dumps(_features("Blob", gland == 1)))
    b = tmp_path / "b.geojson.gz"  # QuPath's compressed export
    b.write_bytes(gzip.compress(json.dumps(_features("Blob", gland == 2)).encode()))
    Image.fromarray(blobs_image(0)[0]).save(tmp_path / "ref.png")
    Image.fromarray(blobs_image(0)[1].astype(np.uint8) * 255).save(tmp_path / "ref_mask.png")
    Image.fromarray(_texture(50, (150, 90, 170))[0]).save(tmp_path / "neg.png")
    seen: list[api.ReferenceSet] = []
    real = api.prepare_reference
    monkeypatch.setattr(api, "load_segmenter", lambda cfg: Segmenter(
        fake_engine, SamEncoderFeatures(), cfg))
    monkeypatch.setattr(api, "prepare_reference",
                        lambda seg, refs, **kw: seen.append(refs) or real(seg, refs, **kw))
    argv = ["run", str(path), "--reference", str(tmp_path / "ref.png"), "--reference-mask",
            str(tmp_path / "ref_mask.png"), "--reference-geojson", str(a),
            "--reference-geojson", str(b), "--reference-slide", str(path),
            "--reference-slide", str(path), "--negative", str(tmp_path / "neg.png"),
            "--class-name", "Blob", "--out", str(tmp_path / "o")]
    for s in SETTINGS:
        argv += ["--set", s]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    [refs] = seen
    assert len(refs.references) == 3 and len(refs.negatives) == 1  # image + two crops
    assert refs.class_name == "Blob"
    assert "warnings" in (tmp_path / "o" / "summary.csv").read_text().splitlines()[0]
    bad = CliRunner().invoke(app, argv[:-2 * len(SETTINGS)] + ["--reference-slide", str(path)])
    assert bad.exit_code == 2 and "one slide per export" in bad.output
