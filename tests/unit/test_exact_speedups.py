"""The faster per-tile and per-slide steps compute exactly what the straightforward code did:
nearest-neighbour resampling by repeated runs, k-means++ seeding with incremental distances,
component areas by counting, the CPU account, opaque slide regions read without compositing."""

import time
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.cluster.vq import kmeans2

from wsi_sat.geometry import Box, Scale, mask_on_box, take_sorted
from wsi_sat.io.slide import Slide, opaque_rgb, opaque_rgb_array
from wsi_sat.runtime.cpu import CpuAccount, CpuMeter
from wsi_sat.runtime.prefetch import Prefetcher
from wsi_sat.sat.clustering import kmeans_labels


def _mask_on_box_by_indexing(thumb, box, frame_wh):
    th, tw = thumb.shape
    w, h = frame_wh
    ys = np.clip(((np.arange(box.y0, box.y1) + 0.5) * th / h).astype(int), -1, th)
    xs = np.clip(((np.arange(box.x0, box.x1) + 0.5) * tw / w).astype(int), -1, tw)
    inside = ((ys >= 0) & (ys < th))[:, None] & ((xs >= 0) & (xs < tw))[None, :]
    return thumb[np.clip(ys, 0, th - 1)][:, np.clip(xs, 0, tw - 1)] & inside


@pytest.mark.parametrize("box", [Box(1000, 2000, 2024, 3024), Box(-100, -50, 924, 974),
                                 Box(9500, 9600, 10524, 10624), Box(3, 5, 4, 6)])
@pytest.mark.parametrize("thumb_hw", [(2000, 1500), (97, 131), (12000, 11000)])
def test_mask_on_box_equals_indexing_the_whole_box(box, thumb_hw):
    thumb = np.random.default_rng(0).random(thumb_hw) > 0.5
    frame = (10000, 11000)
    got = mask_on_box(thumb, box, frame)
    assert got.shape == (box.y1 - box.y0, box.x1 - box.x0)
    assert np.array_equal(got, _mask_on_box_by_indexing(thumb, box, frame))


def test_take_sorted_equals_fancy_indexing():
    rng = np.random.default_rng(1)
    values = rng.random((64, 48)) > 0.3
    rows = np.sort(rng.integers(0, 64, 1000))
    cols = np.minimum((np.arange(700) / 16).astype(int), 47)
    assert np.array_equal(take_sorted(values, rows, cols), values[rows][:, cols])


@pytest.mark.parametrize("n,d,k", [(3000, 266, 16), (400, 12, 5), (50, 3, 7)])
@pytest.mark.parametrize("seed", [0, 1, 13])
def test_kmeans_labels_equal_scipys_kmeans2(n, d, k, seed):
    rng = np.random.default_rng(seed + n)
    x = rng.normal(size=(n, d))
    x[: n // 3] += 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, expected = kmeans2(x, k, minit="++", seed=seed)
    assert np.array_equal(kmeans_labels(x.astype(np.float32), k, seed), expected)


def test_cpu_meter_counts_the_threads_inside_it():
    meter = CpuMeter()
    account = CpuAccount(meter)
    with meter.measure():
        t = time.thread_time()
        while time.thread_time() - t < 0.05:
            pass
    spent = sum(range(200_000))  # outside the meter
    assert spent and 0.04 < meter.seconds < 1.0
    cpu = account.record(tiles=2)
    assert cpu["process_s"] >= cpu["encoder_s"] == pytest.approx(meter.seconds, abs=1e-3)
    assert cpu["outside_encoder_per_tile_s"] == pytest.approx(
        (cpu["process_s"] - cpu["encoder_s"]) / 2, abs=1e-3)


def test_prefetcher_reports_the_readers_time():
    def slow():
        for i in range(4):
            time.sleep(0.02)
            yield i

    with Prefetcher(slow(), 2) as reader:
        assert reader.next_chunk() == [0, 1] and reader.read_s >= 0.035
        assert reader.next_chunk() == [2, 3] and reader.read_s >= 0.035
        assert reader.next_chunk() == []


def test_prefetcher_reads_depth_chunks_ahead_in_order():
    produced = []

    def source():
        for i in range(10):
            produced.append(i)
            yield i

    with Prefetcher(source(), 2, depth=3) as reader:
        reader.request()
        deadline = time.time() + 5
        while len(produced) < 6 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert len(produced) == 6  # three chunks ahead, no more
        got = []
        while chunk := reader.next_chunk():
            got += chunk
            reader.request()
        assert got == list(range(10))


def test_object_pixel_counts_and_scores_are_those_of_their_components():
    from scipy import ndimage

    from wsi_sat.geometry import Scale
    from wsi_sat.stitch.polygons import tile_objects

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:300, :400]
    mask = np.zeros((300, 400), bool)
    for cy, cx, r in [(60, 80, 30), (200, 100, 45), (150, 300, 60), (40, 370, 20)]:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    prob = rng.random((320, 420)).astype(np.float32)[10:310, 10:410]  # a view, as tiles pass
    comp, n = ndimage.label(mask, structure=np.ones((3, 3)))
    want = sorted((int((comp == i).sum()), float(prob[comp == i].astype(np.float64).mean()))
                  for i in range(1, n + 1))
    objs = tile_objects(mask, None, prob, 0, (0, 0), Scale(0.5, 0.5), 1.0)
    got = sorted((o.area_px, o.score) for o in objs)
    assert [a for a, _ in got] == [a for a, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-12)


def test_glass_pixels_equal_the_summed_distance_over_channels():
    import cv2

    from wsi_sat.sat.glass import glass_pixels

    rng = np.random.default_rng(5)
    image = rng.integers(180, 256, (300, 401, 3), dtype=np.uint8)
    glass = (236.0, 231.5, 240.2)
    small = cv2.resize(image, (201, 150), interpolation=cv2.INTER_AREA).astype(np.float32)
    diff = small - np.asarray(glass, np.float32)
    near = ((diff * diff).sum(axis=-1) < 20.0**2).astype(np.uint8)
    want = cv2.resize(near, (401, 300), interpolation=cv2.INTER_NEAREST).astype(bool)
    got = glass_pixels(image, glass, 20.0, 2)
    assert want.any() and (~want).any() and np.array_equal(got, want)


def _composited(region, ycbcr):  # what Slide.read did for every region
    region = region.convert("RGBA")
    white = Image.new("RGBA", region.size, (255, 128, 128, 255) if ycbcr else
                      (255, 255, 255, 255))
    return Image.alpha_composite(white, region).convert("RGB")


@pytest.mark.parametrize("mode", ["RGB", "RGBA opaque", "RGBA transparent", "L", "LA"])
@pytest.mark.parametrize("ycbcr", [False, True])
def test_opaque_regions_read_as_compositing_them_on_white(mode, ycbcr):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    alpha = np.full((37, 53), 255, np.uint8)
    if mode == "RGBA transparent":
        alpha[:10] = 0
        alpha[20:25, 5:9] = 77
    if mode == "RGB":
        region = Image.fromarray(rgb)
    elif mode.startswith("RGBA"):
        region = Image.fromarray(np.dstack([rgb, alpha]))
    elif mode == "L":
        region = Image.fromarray(rgb[..., 0])
    else:
        alpha[:4] = 0
        region = Image.fromarray(np.dstack([rgb[..., 0], alpha]))  # (H, W, 2): "LA"
    out = opaque_rgb(region, ycbcr)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(_composited(region, ycbcr)))


@pytest.mark.parametrize("channels", [1, 3, 4, "4 transparent", 2])
@pytest.mark.parametrize("ycbcr", [False, True])
def test_regions_read_as_arrays_equal_their_pil_images(channels, ycbcr):
    """tiffslide's array, made opaque RGB without PIL where it is already so, equals the PIL
    image tiffslide would have made of it, made opaque RGB (`opaque_rgb`)."""
    rng = np.random.default_rng(4)
    n = 4 if channels == "4 transparent" else channels
    arr = rng.integers(0, 256, (37, 53, n), dtype=np.uint8)
    if n >= 2:
        arr[..., -1] = 255
    if channels == "4 transparent":
        arr[:10, :, 3] = 0
        arr[20:25, 5:9, 3] = 77
    image = Image.fromarray(arr[..., 0] if n == 1 else arr)  # tiffslide's PIL path
    out = opaque_rgb_array(arr, ycbcr)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.asarray(opaque_rgb(image, ycbcr)))


def test_slide_tiles_read_without_pil_equal_the_pil_path(tmp_path, monkeypatch):
    """Tiles inside the slide (no canvas) and across its edge (white canvas), at level 0 and
    resampled, equal what reading through tiffslide's PIL images gave."""
    import tifffile

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, img, tile=(256, 256), compression="zlib",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    boxes = [((100, 50, 512, 512), (512, 512)), ((600, 400, 512, 512), (512, 512)),
             ((-30, -20, 300, 200), (300, 200)), ((10, 20, 600, 400), (300, 200))]
    with Slide(path, 0.5) as slide:
        fast = [slide.read_padded(*box, size) for box, size in boxes]
        assert all(a.flags.writeable and a.flags.c_contiguous for a in fast)
        monkeypatch.setattr(slide, "backend", "PIL images")  # the generic (openslide) path
        slow = [slide.read_padded(*box, size) for box, size in boxes]
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast[0], img[50:562, 100:612])


def test_geojson_rings_listed_at_once_equal_ring_by_ring():
    import numpy as np
    import orjson
    import shapely
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    from wsi_sat.writers.geojson import _ring_coordinates

    rng = np.random.default_rng(3)
    polys = []
    for k in range(20):
        x, y = rng.random(2) * 1e4
        holes = [[(x + 10 + 30 * h, y + 10), (x + 20 + 30 * h, y + 10), (x + 20 + 30 * h, y + 20)]
                 for h in range(k % 3)]
        shell = [(x, y), (x + 200.123456, y), (x + 200, y + 100.987654), (x, y + 100)]
        polys.append(orient(Polygon(shell, holes), 1.0))
    want = [[np.round(shapely.get_coordinates(r), 2).tolist()
             for r in [p.exterior, *p.interiors]] for p in polys]
    got = _ring_coordinates(polys)
    assert [[ring.tolist() for ring in rings] for rings in got] == want
    # written by orjson as the same document as the lists of floats
    assert orjson.dumps(got, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(want)
    assert _ring_coordinates([]) == []


def test_geometries_moved_to_level0_at_once_equal_translate_then_scale():
    import shapely
    from shapely.affinity import scale as affine_scale
    from shapely.affinity import translate

    from wsi_sat.geometry import Scale

    rng = np.random.default_rng(3)
    polys = [shapely.Polygon(rng.random((7, 2)) * 900).convex_hull for _ in range(20)]
    polys.append(shapely.Polygon([(0, 0), (9, 0), (9, 9), (0, 9)],
                                 [[(2, 2), (2, 4.25), (4.5, 4.25), (4.5, 2)]]))
    sc = Scale(0.2527, 0.5)
    moved = sc.geometries_to_level0(polys, (3072.0, 1024.0))
    for poly, got in zip(polys, moved):
        want = affine_scale(translate(poly, 3072.0, 1024.0), sc.downsample, sc.downsample,
                            origin=(0, 0))
        assert shapely.to_wkb(got) == shapely.to_wkb(want)
    assert sc.geometries_to_level0([], (0.0, 0.0)) == []


def test_geojson_features_measured_at_once_equal_polygon_by_polygon():
    import uuid

    import numpy as np
    import orjson
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    from wsi_sat.stitch.polygons import TileObject
    from wsi_sat.writers.geojson import feature_collection

    rng = np.random.default_rng(5)
    objs = []
    for k in range(12):
        x, y = rng.random(2) * 1e4
        shell = [(x, y), (x + 150.3, y), (x + 150, y + 80.7 + k), (x, y + 90)]
        if k % 2:
            shell = shell[::-1]  # clockwise: oriented by the writer
        objs.append(TileObject(k + 1, k, Polygon(shell), float(rng.random()), 100))
    from wsi_sat.writers.tables import objects_table

    table = objects_table(objs, "gland", Scale(0.5, 0.5))
    got = feature_collection(objs, "annotation", "gland", [0, 200, 80], table)
    namespace = uuid.UUID("6f1c0ad2-6e1d-4c43-9bd4-4a2b5c0c7a51")
    for i, (obj, feature) in enumerate(zip(objs, got["features"])):
        poly = orient(obj.polygon, 1.0)
        assert feature["id"] == str(uuid.uuid5(namespace, f"{i}:{poly.wkt[:200]}"))
        m = feature["properties"]["measurements"]
        assert list(m.values())[:3] == [round(poly.area * 0.25, 3), round(poly.length * 0.5, 3),
                                        round(obj.score, 4)]
        rings = [np.round(np.asarray(poly.exterior.coords), 2).tolist()]
        assert orjson.loads(orjson.dumps(feature["geometry"], option=orjson.OPT_SERIALIZE_NUMPY)
                            )["coordinates"] == rings
