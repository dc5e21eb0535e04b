"""Regions decoded straight from a tiled TIFF's tiles equal tiffslide's reads of them, for every
compression and layout it takes; everything else is left to tiffslide."""

import numpy as np
import pytest
import tifffile
import tiffslide

from wsi_sat.io.slide import Slide
from wsi_sat.io.tiff_tiles import DECODED_TILES_KEPT, tiled_level


def _pyramid(path, img, compression, tile=(256, 256), photometric="rgb", **kw):
    """A two-level pyramidal TIFF (SubIFDs, as tiffslide reads generic pyramids)."""
    with tifffile.TiffWriter(path) as tif:
        opts = {"tile": tile, "compression": compression, "photometric": photometric, **kw}
        tif.write(img, subifds=1, resolution=(1e4 / 0.5, 1e4 / 0.5),
                  resolutionunit="CENTIMETER", **opts)
        tif.write(img[::2, ::2], subfiletype=1, **opts)


def _regions(w, h, rng, n=25):
    boxes = [(0, 0, w, h), (w - 37, h - 41, 37, 41), (3, 5, 1, 1), (w // 3, h // 4, 12, h // 2)]
    for _ in range(n):
        bw, bh = int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2))
        boxes.append((int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)),
                      bw, bh))
    return boxes


@pytest.mark.parametrize("compression,extra", [
    ("zlib", {}), ("lzw", {}), (None, {}), ("jpeg", {}),
    ("jpeg", {"photometric": "ycbcr", "subsampling": (2, 2)}), ("zlib", {"rgba": True}),
    ("zlib", {"tile": (128, 384)})])
def test_tile_decoded_regions_equal_tiffslides(tmp_path, compression, extra):
    rng = np.random.default_rng(7)
    channels = 4 if extra.pop("rgba", False) else 3
    img = rng.integers(0, 256, (700, 900, channels), dtype=np.uint8)
    img[100:300, 200:500] = 200  # flat areas compress differently
    path = tmp_path / "s.tif"
    _pyramid(path, img, compression, **extra)
    with tiffslide.TiffSlide(path) as ts:
        assert ts.level_count == 2
        for level in range(ts.level_count):
            tiled = tiled_level(ts, level)
            assert tiled is not None
            w, h = ts.level_dimensions[level]
            for x, y, bw, bh in _regions(w, h, rng):
                want = ts.read_region((int(x * ts.level_downsamples[level]),
                                       int(y * ts.level_downsamples[level])), level, (bw, bh),
                                      as_array=True)
                got = tiled.read(x, y, bw, bh)
                assert got is not None and got.flags.writeable
                np.testing.assert_array_equal(got, want)
            assert len(tiled._decoded) <= DECODED_TILES_KEPT


def test_regions_leaving_the_level_or_with_missing_tiles_are_tiffslides(tmp_path):
    img = np.random.default_rng(8).integers(0, 256, (600, 700, 3), dtype=np.uint8)
    path = tmp_path / "s.tif"
    _pyramid(path, img, "zlib")
    with tiffslide.TiffSlide(path) as ts:
        tiled = tiled_level(ts, 0)
        assert tiled.read(-1, 0, 10, 10) is None
        assert tiled.read(650, 0, 51, 10) is None
        assert tiled.read(0, 0, 0, 10) is None
        tiled._offsets = list(tiled._offsets)
        tiled._offsets[1] = 0  # a tile the scanner never wrote
        assert tiled.read(200, 0, 100, 50) is None
        assert tiled.read(0, 0, 100, 50) is not None
    with Slide(path, 0.5) as slide:  # the slide reads such regions through tiffslide
        slide._tiled[0] = tiled
        np.testing.assert_array_equal(slide.read(200, 0, 100, 50, (100, 50)),
                                      img[0:50, 200:300])


def test_stripped_tiffs_are_left_to_tiffslide(tmp_path):
    img = np.random.default_rng(9).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, img, rowsperstrip=64, compression="zlib")
    with tiffslide.TiffSlide(path) as ts:
        assert tiled_level(ts, 0) is None
    with Slide(path, 0.5) as slide:
        np.testing.assert_array_equal(slide.read(10, 20, 100, 50, (100, 50)),
                                      img[20:70, 10:110])
