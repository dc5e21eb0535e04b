"""The real slides' tiled levels (SVS: JPEG and JPEG 2000 tiles) read tile by tile equal
tiffslide's reads; NDPI (stripes) and stripped TIFFs are left to tiffslide."""

import numpy as np
import tiffslide

from tests.conftest import shared_or_skip
from wsi_sat.io.tiff_tiles import tiled_level


def test_real_slides_tile_decoded_regions_equal_tiffslides():
    slides = shared_or_skip("data", "slides")
    read_tiled = []
    for path in sorted(slides.glob("*.*")):
        if path.suffix not in (".svs", ".ndpi", ".tif"):
            continue
        with tiffslide.TiffSlide(path) as ts:
            for level in range(ts.level_count):
                tiled = tiled_level(ts, level)
                if path.suffix == ".ndpi":
                    assert tiled is None
                if tiled is None:
                    continue
                read_tiled.append((path.name, level))
                rng = np.random.default_rng(level)
                w, h = ts.level_dimensions[level]
                d = ts.level_downsamples[level]
                for _ in range(12):
                    bw, bh = int(rng.integers(1, min(w, 1100))), int(rng.integers(1, min(h, 1100)))
                    x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
                    loc = (int(round(x * d)), int(round(y * d)))
                    want = ts.read_region(loc, level, (bw, bh), as_array=True)
                    got = tiled.read(int(loc[0] / d), int(loc[1] / d), bw, bh)
                    assert got is not None
                    np.testing.assert_array_equal(got, want)
    assert ("CMU-1-Small-Region.svs", 0) in read_tiled
    assert ("TCGA-CR-7395-01A-01-TS1.svs", 1) in read_tiled
