"""The DICOM copy of CMU-1 reads like its SVS copy: its JPEG frames hold YCbCr although the
header says RGB, which openslide decodes in false colour (glass read 235, 128, 130)."""

import numpy as np

from tests.conftest import shared_or_skip
from wsi_sat.io.slide import Slide, _looks_ycbcr


def test_dicom_and_svs_copies_of_cmu1_agree_pixel_by_pixel():
    slides = shared_or_skip("data", "slides")
    with Slide(slides / "CMU-1-Small-Region-dicom") as dicom, \
            Slide(slides / "CMU-1-Small-Region.svs") as svs:
        a = dicom.read(500, 500, 1000, 1000, (1000, 1000)).astype(np.int16)
        b = svs.read(500, 500, 1000, 1000, (1000, 1000)).astype(np.int16)
        assert dicom._ycbcr and not svs._ycbcr
    diff = np.abs(a - b)
    assert diff.mean() < 8 and np.percentile(diff, 99) < 40  # JPEG error (measured 4.5, 28)


def test_ycbcr_signature_of_a_glass_border():
    rgb = np.full((20, 20, 3), (238, 233, 236), np.uint8)  # RGB glass
    assert not _looks_ycbcr(rgb)
    ycbcr = np.full((20, 20, 3), (235, 128, 130), np.uint8)  # the same glass as YCbCr
    assert _looks_ycbcr(ycbcr)
    grey = np.full((20, 20, 3), (128, 128, 128), np.uint8)  # a grey RGB background stays RGB
    assert not _looks_ycbcr(grey)
