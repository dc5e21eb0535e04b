"""Whole-slide pipeline end to end on a pyramidal TIFF built on the fly (fast fake SAM)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from PIL import Image
from scipy import ndimage
from shapely.geometry import shape

from tests.conftest import blobs_image
from wsi_sat import api
from wsi_sat.config import load_config
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.pipeline import RunOptions, run_slide
from wsi_sat.raster import rasterise
from wsi_sat.reference import Reference
from wsi_sat.reference.prepare import reference_windows
from wsi_sat.sat.metrics import dice, iou
from wsi_sat.segmenter import Segmenter
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff
from wsi_sat.writers.ome_zarr import read_level

MPP = 0.5


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    d = tmp_path_factory.mktemp("slide")
    pairs = [blobs_image(10 + i, size=(200, 240), n=4) for i in range(9)]
    image, truth = mosaic(pairs, cols=3, cell_hw=(200, 240), gap_px=40)
    path = d / "blobs.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    return path, truth


def _pipeline(fake_engine, slide_path, out, mode="map", lanes=0, batch_tiles=2, **opts):
    cfg = load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16",
                             f"sat.decode.mode={mode}", f"runtime.lanes={lanes}",
                             "wsi.tile_px=256", "wsi.overlap_px=32",
                             f"wsi.batch_tiles={batch_tiles}", "wsi.workers=0",
                             "wsi.class_name=Blob", "wsi.pyramid_min_px=64",
                             "wsi.min_tissue_area_um2=100"])  # a toy-scale slide: 20 µm blobs
    seg = Segmenter(fake_engine, SamEncoderFeatures(), cfg)
    reference = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference("blobs", *blobs_image(0), "array")]))
    return run_slide(slide_path, reference, seg, cfg, RunOptions(out_dir=out, **opts))


def _rasterise(geo: dict, shape_hw) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (holes cut out)."""
    return rasterise([shape(f["geometry"]) for f in geo["features"]], shape_hw,
                     lambda xy: xy - 0.5)


def test_region_run_outputs(slide, fake_engine, tmp_path):
    path, truth = slide
    summary = _pipeline(fake_engine, path, tmp_path)
    stem = "blobs"
    run = json.loads((tmp_path / f"{stem}.run.json").read_text())
    for key in ("slide", "working_mpp", "tile_px", "tiles", "timings_s"):
        assert key in run
    assert run["slide"]["level0_size"] == [truth.shape[1], truth.shape[0]]
    assert run["slide"]["mpp"] == pytest.approx(MPP) and run["working_mpp"] == pytest.approx(MPP)
    assert set(run["tiles"]) >= {"grid", "tissue", "segmented"}
    assert run["tiles"]["grid"] >= run["tiles"]["tissue"] == summary.tiles_segmented > 0
    assert "total" in run["timings_s"]
    # every object is tagged as wsi-sat's (the QuPath import replaces only tagged objects)
    from wsi_sat.writers.geojson import TAG

    for name in (f"{stem}.geojson", f"{stem}.tissue.geojson"):
        features = json.loads((tmp_path / name).read_text())["features"]
        assert features and all(f["properties"]["metadata"] == {TAG: run["run_key"][:12]}
                                for f in features), name
    # the CPU account (in-process run): the encoder's share of the process's CPU time
    cpu = run["cpu_s"]
    assert cpu["tiles"] == summary.tiles_segmented
    assert 0 < cpu["encoder_s"] <= cpu["process_s"]
    assert cpu["outside_encoder_s"] == pytest.approx(cpu["process_s"] - cpu["encoder_s"],
                                                     abs=2e-3)
    assert cpu["outside_encoder_per_tile_s"] == pytest.approx(
        cpu["outside_encoder_s"] / cpu["tiles"], abs=1e-3)
    for stage in ("tiles_read", "tiles_read_wait", "tiles_encode", "tiles_polygons"):
        assert run["timings_s"][stage] >= 0

    # OME-Zarr: readable by ome_zarr's reader, a full pyramid with µm scales
    nodes = list(Reader(parse_url(str(tmp_path / f"{stem}.ome.zarr")))())
    data = nodes[0].data
    assert len(data) >= 3 and data[0].shape == truth.shape
    ms = nodes[0].metadata
    assert ms["axes"][0]["unit"] == "micrometer"
    level0 = read_level(tmp_path / f"{stem}.ome.zarr", 0) > 0
    assert dice(level0, truth) > 0.85
    label = _ngff_label(tmp_path / f"{stem}.ome.zarr")  # valid NGFF 0.4 (ome-zarr-models)
    assert label.colors[0].label_value == 1 and label.properties[0].model_extra["class"] == "Blob"

    # GeoJSON: QuPath's import rules
    geo = json.loads((tmp_path / f"{stem}.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and geo["features"]
    for f in geo["features"]:
        props = f["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"]["name"] == "Blob"
        assert len(props["classification"]["color"]) == 3
        # QuPath recomputes "Area µm^2" / "Perimeter µm" of annotations and drops those names
        assert {"wsi-sat area µm^2", "wsi-sat perimeter µm", "score"} <= set(props["measurements"])
        assert "Area µm^2" not in props["measurements"]
        geom = f["geometry"]
        assert geom["type"] == "Polygon"
        for ring in geom["coordinates"]:
            assert ring[0] == ring[-1] and len(ring) >= 4  # closed rings
        poly = shape(geom)
        assert poly.is_valid and poly.exterior.is_ccw  # consistently oriented (RFC 7946)
        assert all(not r.is_ccw for r in poly.interiors)
    # polygons rasterised back agree with the label image
    assert iou(_rasterise(geo, truth.shape), level0) >= 0.98
    # no object split at a tile border: one polygon per connected object
    _, n_objects = ndimage.label(level0, structure=np.ones((3, 3)))
    assert len(geo["features"]) == n_objects
    assert (tmp_path / f"{stem}.overview.png").is_file()
    # the object table: one row per GeoJSON feature, same areas; tissue GeoJSON; run.json
    table = pd.read_csv(tmp_path / f"{stem}.objects.csv")
    assert len(table) == len(geo["features"])
    areas = [f["properties"]["measurements"]["wsi-sat area µm^2"] for f in geo["features"]]
    assert table["area_um2"].sum() == pytest.approx(sum(areas), rel=1e-3)
    assert run["target_area_mm2"] == pytest.approx(sum(areas) / 1e6, rel=1e-3)
    tissue = json.loads((tmp_path / f"{stem}.tissue.geojson").read_text())
    assert tissue["features"] and run["tissue"]["area_mm2"] > 0.5 * run["target_area_mm2"] > 0
    assert run["schema_version"] >= 2 and run["started_utc"] <= run["finished_utc"]
    assert {"scikit-learn", "scikit-image"} <= set(run["versions"])
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.shards"))


def test_resume_gives_the_same_result(slide, fake_engine, tmp_path):
    path, _ = slide
    full, part = tmp_path / "full", tmp_path / "part"
    _pipeline(fake_engine, path, full)
    interrupted = _pipeline(fake_engine, path, part, max_batches=2)
    assert interrupted.objects == 0
    assert not (part / "blobs.geojson").exists()  # nothing that looks complete
    assert (part / "blobs.ome.zarr.partial").is_dir()
    assert len(list((part / "blobs.shards").glob("batch_*.json"))) == 2
    _pipeline(fake_engine, path, part, resume=True)
    a = read_level(full / "blobs.ome.zarr", 0)
    b = read_level(part / "blobs.ome.zarr", 0)
    assert np.array_equal(a, b)
    ga = json.loads((full / "blobs.geojson").read_text())
    gb = json.loads((part / "blobs.geojson").read_text())
    assert [f["geometry"] for f in ga["features"]] == [f["geometry"] for f in gb["features"]]


def test_a_failing_lane_stops_the_others_and_resume_completes(slide, fake_engine, tmp_path,
                                                               monkeypatch):
    """One lane's error stops the run: the other lane stops before its next tile instead of
    finishing its batch, writes no shard for it, the error raised is the first one, and
    `--resume` gives the same outputs as a run that never failed."""
    import threading
    import time

    from wsi_sat.pipeline import batch as pipeline
    from wsi_sat.pipeline import run as pipeline_run

    path, _ = slide
    full, part = tmp_path / "full", tmp_path / "part"
    planned: dict[int, list[int]] = {}
    real_batch = pipeline.segment_batch

    def planning_batch(task, *args):
        planned[task.batch] = [t.index for t in task.tiles]
        return real_batch(task, *args)

    monkeypatch.setattr(pipeline_run, "segment_batch", planning_batch)
    _pipeline(fake_engine, path, full, lanes=2, batch_tiles=3)
    monkeypatch.setattr(pipeline_run, "segment_batch", real_batch)
    assert len(planned[0]) == len(planned[1]) == 3  # two lanes, each on a 3-tile batch

    real_read = pipeline.read_tile
    lock, other_lane_reading, failed = threading.Lock(), threading.Event(), threading.Event()
    reads: dict[str, list[int]] = {}

    def failing_read(slide_, scale, tile, tile_px):
        lane = "a" if tile.index in planned[0] else "b"
        with lock:
            reads.setdefault(lane, []).append(tile.index)
        if lane == "a" and len(reads["a"]) == 2:  # batch 0's second tile: wait for b, fail
            other_lane_reading.wait(10)
            failed.set()
            raise OSError("slide file vanished")
        if lane == "b":
            other_lane_reading.set()
            if len(reads["b"]) > 1:  # b's next tiles come after a's failure
                failed.wait(10)
                time.sleep(0.5)  # time for the run to notice it
        return real_read(slide_, scale, tile, tile_px)

    monkeypatch.setattr(pipeline, "read_tile", failing_read)
    with pytest.raises(OSError, match="slide file vanished"):
        _pipeline(fake_engine, path, part, lanes=2, batch_tiles=3)
    assert len(reads["b"]) < 3  # lane b stopped inside its batch
    done = [json.loads(p.read_text()) for p in (part / "blobs.shards").glob("batch_*.json")]
    assert all(s["tiles"] == planned[s["batch"]] for s in done)  # whole batches only
    assert 1 not in {s["batch"] for s in done}
    assert not (part / "blobs.geojson").exists()
    monkeypatch.setattr(pipeline, "read_tile", real_read)
    _pipeline(fake_engine, path, part, lanes=2, batch_tiles=3, resume=True)
    assert np.array_equal(read_level(full / "blobs.ome.zarr", 0),
                          read_level(part / "blobs.ome.zarr", 0))
    ga = json.loads((full / "blobs.geojson").read_text())
    gb = json.loads((part / "blobs.geojson").read_text())
    assert ga["features"] == gb["features"]


@pytest.mark.parametrize("mode", ["map", "instances"])
def test_lanes_give_the_same_outputs(slide, fake_engine, tmp_path, mode):
    """Batches on three lanes at once (threads sharing the models): the same label image and
    the same objects, in the same order, as one lane."""
    path, _ = slide
    one, three = tmp_path / "one", tmp_path / "three"
    a = _pipeline(fake_engine, path, one, mode=mode, lanes=1)
    b = _pipeline(fake_engine, path, three, mode=mode, lanes=3)
    assert a.objects == b.objects > 0
    assert np.array_equal(read_level(one / "blobs.ome.zarr", 0),
                          read_level(three / "blobs.ome.zarr", 0))
    ga = json.loads((one / "blobs.geojson").read_text())
    gb = json.loads((three / "blobs.geojson").read_text())
    assert ga["features"] == gb["features"]


def test_instances_are_unique_and_merged_across_tiles(slide, fake_engine, tmp_path):
    path, truth = slide
    _pipeline(fake_engine, path, tmp_path, mode="instances")
    labels = read_level(tmp_path / "blobs.ome.zarr", 0)
    geo = json.loads((tmp_path / "blobs.geojson").read_text())
    assert all(f["properties"]["objectType"] == "detection" for f in geo["features"])
    ids = np.unique(labels[labels > 0])
    assert len(ids) == len(geo["features"])
    # each object is one label: no label appears in two separate places, no object has two
    for lab in ids[:20]:
        _, parts = ndimage.label(labels == lab, structure=np.ones((3, 3)))
        assert parts == 1
    assert dice(labels > 0, truth) > 0.8
    # objects.csv's label column and the store's properties name each instance's label value
    table = pd.read_csv(tmp_path / "blobs.objects.csv")
    assert sorted(table["label"]) == sorted(ids.tolist())
    label = _ngff_label(tmp_path / "blobs.ome.zarr")
    assert label.colors is None
    assert {(p.label_value, p.model_extra["object"]) for p in label.properties} == \
        set(zip(table["label"], table["id"]))
    polys = [shape(f["geometry"]) for f in geo["features"]]
    union = shapely.union_all(polys)
    assert union.area == pytest.approx(sum(p.area for p in polys), rel=0.02)  # no overlaps
    # `wsi-sat check`'s cross-checks hold on instances: labels = table, polygons = labels
    from wsi_sat.pipeline.verify import check_output

    assert [c.problems for c in check_output(tmp_path)] == [[]]


def _ngff_label(store: Path):
    from ome_zarr_models.v04.image_label import ImageLabel

    group = zarr.open_group(str(store), mode="r", zarr_format=2)
    return ImageLabel.from_zarr(group).attributes.image_label


def test_missing_mpp_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from wsi_sat.cli import app

    img = np.full((300, 300, 3), 230, np.uint8)
    Image.fromarray(img).save(tmp_path / "plain.tif")
    ref = blobs_image(0)
    Image.fromarray(ref[0]).save(tmp_path / "ref.png")
    Image.fromarray(ref[1].astype(np.uint8) * 255).save(tmp_path / "ref_mask.png")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "plain.tif"), "--reference",
                                      str(tmp_path / "ref.png"), "--out", str(tmp_path / "o"),
                                      "--workers", "0"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no pixel size" in lines[0] and "--slide-mpp" in lines[0]


def _from_geojson(geojson, slide_path, working_mpp, slide_mpp, margin, class_name=None):
    from wsi_sat.reference.annotations import read_annotated_slides, reference_from_geojson

    sets = read_annotated_slides([geojson], [slide_path])
    return reference_from_geojson(sets, working_mpp, margin, class_name, slide_mpp=slide_mpp)


def test_reference_from_a_qupath_annotation(slide, tmp_path):

    path, truth = slide
    # a QuPath-style annotation around the first mosaic cell (level-0 pixels)
    x0, y0, x1, y1 = 40, 40, 280, 240
    geo = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"objectType": "annotation"},
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1],
                                                          [x0, y1], [x0, y0]]]}}]}
    f = tmp_path / "ann.geojson"
    f.write_text(json.dumps(geo))
    got = _from_geojson(f, path, None, None, margin=0.25)
    ref = got.targets[0]
    assert got.mpp == pytest.approx(MPP) and not got.negatives
    h, w = ref.mask.shape
    assert (h, w) == (round(200 * 1.5), round(240 * 1.5))
    assert ref.mask.mean() == pytest.approx(1 / 1.5**2, abs=0.02)  # the box inside its margin
    assert ref.image.shape == (h, w, 3)
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    from wsi_sat.errors import ReferenceError

    with pytest.raises(ReferenceError, match="no polygon"):
        _from_geojson(bad, path, None, None, margin=0.25)


def test_annotation_classes_give_target_and_negatives(slide, tmp_path):
    """A bare array of features (QuPath's default export): the named class is the target, the
    others are negatives cropped to their own boxes; an annotation off the slide is refused."""
    from wsi_sat.errors import ReferenceError

    path, _ = slide

    def feat(box, cls):
        x0, y0, x1, y1 = box
        return {"type": "Feature", "properties": {"classification": {"name": cls}},
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1],
                                                                  [x0, y1], [x0, y0]]]}}

    f = tmp_path / "classes.geojson"
    f.write_text(json.dumps([feat((40, 40, 280, 240), "Blob"), feat((300, 300, 400, 380), "Glass"),
                             feat((500, 40, 540, 80), "Glass")]))
    got = _from_geojson(f, path, None, None, margin=0.25, class_name="Blob")
    assert got.class_name == "Blob" and len(got.negatives) == 2
    assert got.negatives[0].mask.shape == (80, 100) and got.negatives[0].mask.all()
    assert _from_geojson(f, path, None, None, 0.25).class_name == "Glass"  # most frequent
    with pytest.raises(ReferenceError, match="no annotation of class 'Gland'"):
        _from_geojson(f, path, None, None, 0.25, class_name="Gland")
    off = tmp_path / "off.geojson"
    off.write_text(json.dumps(feat((-5000, -5000, -4000, -4000), "Blob")))
    with pytest.raises(ReferenceError, match="outside the slide"):
        _from_geojson(off, path, None, None, 0.25)


def test_large_references_are_cut_into_tile_sized_windows():
    img, mask = blobs_image(3, size=(600, 500), n=12)
    windows = reference_windows(img, mask, 256)
    assert len(windows) > 1
    assert all(w[0].shape[:2] == w[1].shape == (256, 256) for w in windows)
    assert all(0 < w[1].mean() < 1 for w in windows)
    assert reference_windows(img[:200, :200], mask[:200, :200], 256)[0][1].shape == (200, 200)


def test_coarse_to_fine_skips_tissue_without_the_target(fake_engine, tmp_path):
    """Blobs in one cell, plain tissue in the others: the coarse pass keeps the tiles around
    the blobs only, and the result there is the one of the full run."""
    cells = [blobs_image(30, size=(200, 240), n=4, radius=(26, 34))]
    cells += [blobs_image(31 + i, size=(200, 240), n=0) for i in range(8)]
    image, truth = mosaic(cells, cols=3, cell_hw=(200, 240), gap_px=40)
    path = tmp_path / "sparse.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    ref = blobs_image(0, size=(400, 480), n=8, radius=(26, 34))
    runs = {}
    for d in (0, 2):
        cfg = load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16",
                                 "sat.decode.mode=map", "wsi.tile_px=256", "wsi.overlap_px=32",
                                 "wsi.batch_tiles=2", "wsi.pyramid_min_px=64",
                                 f"wsi.coarse_downsample={d}"])
        seg = Segmenter(fake_engine, SamEncoderFeatures(), cfg)
        reference = api.prepare_reference(seg, api.ReferenceRequest(
            images=[Reference("blobs", *ref, "array")]))
        assert (reference.coarse is None) == (d == 0)
        out = tmp_path / f"out{d}"
        summary = api.run_slide(path, reference, seg, out_dir=out)
        run = json.loads((out / "sparse.run.json").read_text())
        runs[d] = (summary, run, read_level(out / "sparse.ome.zarr", 0) > 0)
    full, c2f = runs[0], runs[2]
    assert full[1]["tiles"]["coarse"] == {"enabled": False}
    assert c2f[1]["tiles"]["coarse"]["enabled"] and c2f[1]["tiles"]["coarse"]["coarse_tiles"] > 0
    assert 0 < c2f[0].tiles_segmented < full[0].tiles_segmented / 2
    assert dice(c2f[2], truth) >= dice(full[2], truth) - 0.01 > 0.5


def test_qupath_coordinates_follow_the_slide_bounds(slide, fake_engine, tmp_path, monkeypatch):
    """A slide whose reader reports a bounds offset (MRXS, SCN): QuPath shows the image cropped
    to it, so the GeoJSON is written, and a reference annotation read, in that frame."""
    from wsi_sat.io import slide as slide_io

    path, _ = slide
    plain = _pipeline(fake_engine, path, tmp_path / "plain")
    monkeypatch.setattr(slide_io, "_bounds", lambda props, backend: (100, 40))
    shifted = _pipeline(fake_engine, path, tmp_path / "shifted")
    assert plain.objects == shifted.objects
    a = json.loads((tmp_path / "plain" / "blobs.geojson").read_text())["features"]
    b = json.loads((tmp_path / "shifted" / "blobs.geojson").read_text())["features"]
    pa = shape(a[0]["geometry"]).bounds
    pb = shape(b[0]["geometry"]).bounds
    assert pb == pytest.approx((pa[0] - 100, pa[1] - 40, pa[2] - 100, pa[3] - 40))
    run = json.loads((tmp_path / "shifted" / "blobs.run.json").read_text())
    assert run["slide"]["qupath_origin_level0"] == [100, 40]
    from wsi_sat.pipeline.verify import check_output  # polygons compared in the right frame

    assert [c.problems for c in check_output(tmp_path / "shifted")] == [[]]
    # an annotation drawn in QuPath at (x, y) is the level-0 region (x + 100, y + 40)
    ann = tmp_path / "ann.geojson"
    ann.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[0, 0], [140, 0], [140, 160], [0, 160], [0, 0]]]}}))
    got = _from_geojson(ann, path, None, None, margin=0.25)
    monkeypatch.setattr(slide_io, "_bounds", lambda props, backend: (0, 0))
    ann.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[100, 40], [240, 40], [240, 200], [100, 200],
                                            [100, 40]]]}}))
    same = _from_geojson(ann, path, None, None, margin=0.25)
    assert np.array_equal(got.targets[0].image, same.targets[0].image)


@pytest.mark.parametrize("mode", ["map", "instances"])
def test_tiles_finished_on_the_lanes_threads_equal_the_cpu_path(slide, fake_engine, tmp_path,
                                                                mode):
    """On an accelerator each tile is finished (glass rule, polygons, its label chunk) on the
    lane's CPU threads while the device goes on; the slide's outputs equal those of the CPU
    path, where tiles are finished one after the other (the map mode under the slide's
    decision also takes the device's map: equal within float32 rounding). The fake engine's
    tensors stay on the CPU; only its device type says accelerator."""
    import torch

    path, _ = slide
    _pipeline(fake_engine, path, tmp_path / "cpu", mode=mode, batch_tiles=3)
    fake_engine.device = torch.device("cuda")
    _pipeline(fake_engine, path, tmp_path / "acc", mode=mode, batch_tiles=3)
    cpu = read_level(tmp_path / "cpu" / "blobs.ome.zarr", 0)
    acc = read_level(tmp_path / "acc" / "blobs.ome.zarr", 0)
    assert cpu.any() and ((cpu > 0) != (acc > 0)).mean() < 1e-3
    if mode == "instances":
        assert np.array_equal(cpu, acc)
    objects = [pd.read_csv(tmp_path / d / "blobs.objects.csv") for d in ("cpu", "acc")]
    assert len(objects[0]) == len(objects[1]) > 0
    assert objects[0]["area_um2"].sum() == pytest.approx(objects[1]["area_um2"].sum(), rel=1e-2)


def test_the_reference_slide_keeps_its_own_pixel_size(slide, tmp_path):
    """--slide-mpp is for the slides to segment: it stands in for the annotated slide's pixel
    size only where that slide has none; --reference-slide-mpp overrides it."""
    from PIL import Image

    from wsi_sat.errors import MissingMppError
    from wsi_sat.reference import ReferenceRequest
    from wsi_sat.reference.request import read_references

    path, _ = slide
    ann = tmp_path / "ann.geojson"
    ann.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[20, 20], [220, 20], [220, 180], [20, 180],
                                            [20, 20]]]}}))

    def mpp(slide_path, **kw):
        request = ReferenceRequest(geojson=[ann], slides=[slide_path], **kw)
        return read_references(request, 0.25).mpp

    assert mpp(path, slide_mpp=0.25) == pytest.approx(MPP)  # its metadata wins
    assert mpp(path, reference_slide_mpp=0.25) == pytest.approx(0.25)
    plain = tmp_path / "nompp.tif"
    Image.fromarray(np.asarray(Image.open(path))).save(plain)  # no resolution tags
    assert mpp(plain, slide_mpp=0.4) == pytest.approx(0.4)  # stands in where there is none
    with pytest.raises(MissingMppError, match="--reference-slide-mpp"):
        mpp(plain)
