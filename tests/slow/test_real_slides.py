"""Real whole-slide files from ../shared/data/slides through `wsi-sat run` (real MobileSAM)."""

import json

import pytest
from click.testing import CliRunner

from tests.conftest import shared_or_skip
from wsi_sat.cli import app
from wsi_sat.config import WsiConfig

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FAST = ["--set", "sat.reference.augment=false", "--set", "sat.decode.mode=map",
        "--set", "sat.pixel.enabled=false", "--mpp", "2.0", "--tile-px", "512",
        "--overlap-px", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def reference_args():
    tiles = shared_or_skip("data", "tiles", "glas_colon_glands")
    return ["--reference", str(tiles / "images" / "testA_1.jpg"),
            "--reference-mask", str(tiles / "masks" / "testA_1.png"), "--reference-mpp", "0.62"]


def _check_outputs(out, stem, backend):
    run = json.loads((out / f"{stem}.run.json").read_text())
    assert run["slide"]["backend"] == backend
    assert run["tiles"]["segmented"] >= 1 and run["working_mpp"] == 2.0
    for suffix in (".geojson", ".overview.png"):
        assert (out / f"{stem}{suffix}").is_file()
    assert (out / f"{stem}.ome.zarr" / "0").is_dir()
    from wsi_sat.pipeline.plan import OutputPaths
    from wsi_sat.pipeline.verify import check_slide

    assert check_slide(OutputPaths(stem, out)).problems == []  # the manifest and cross-checks
    return run


def test_svs_ndpi_dicom_with_metadata_mpp_on_a_local_dask_worker(tmp_path, reference_args):
    slides = shared_or_skip("data", "slides")
    result = CliRunner().invoke(app, [
        "run", str(slides / "CMU-1-Small-Region.svs"), str(slides / "test3-DAPI-2-387.ndpi"),
        str(slides / "CMU-1-Small-Region-dicom"), *reference_args, "--out", str(tmp_path),
        "--workers", "1", *FAST])
    assert result.exit_code == 0, result.output
    svs = _check_outputs(tmp_path, "CMU-1-Small-Region", "tiffslide")
    assert svs["slide"]["mpp"] == pytest.approx(0.499)
    ndpi = _check_outputs(tmp_path, "test3-DAPI-2-387", "tiffslide")
    assert ndpi["slide"]["level0_size"] == [3968, 4864]
    dicom = _check_outputs(tmp_path, "CMU-1-Small-Region-dicom", "openslide")
    assert dicom["slide"]["level0_size"] == [2220, 2967]


def test_tiff_and_tcga_need_slide_mpp(tmp_path, reference_args):
    slides = shared_or_skip("data", "slides")
    for name in ("TCGA-CR-7395-01A-01-TS1.svs", "idr0073-kidney-48-5.tif"):
        result = CliRunner().invoke(app, ["run", str(slides / name), *reference_args,
                                          "--out", str(tmp_path / "x"), *FAST])
        assert result.exit_code == 2
        assert result.output.count("\n") == 1 and "--slide-mpp" in result.output
    result = CliRunner().invoke(app, [
        "run", str(slides / "TCGA-CR-7395-01A-01-TS1.svs"), str(slides / "idr0073-kidney-48-5.tif"),
        *reference_args, "--out", str(tmp_path), "--slide-mpp", "0.5", "--workers", "0", *FAST])
    assert result.exit_code == 0, result.output
    tcga = _check_outputs(tmp_path, "TCGA-CR-7395-01A-01-TS1", "tiffslide")
    assert tcga["slide"]["mpp_source"] == "--slide-mpp"
    _check_outputs(tmp_path, "idr0073-kidney-48-5", "tiffslide")


def test_a_target_free_real_slide_comes_out_nearly_empty(tmp_path, reference_args):
    """The skin section holds no colon gland: with a GlaS gland reference, the slide-level open
    set and decision keep the tissue it never showed empty (measured 0.022 of the tissue and
    0.003 on glass with the default config; 0.61 and 0.032 with the two-class decision of each
    tile) and paint no glass around it."""
    import numpy as np
    import tiffslide

    from wsi_sat.raster import resize_mask
    from wsi_sat.tiling.tissue import tissue_mask
    from wsi_sat.writers.ome_zarr import read_level

    slide = shared_or_skip("data", "slides", "CMU-1-Small-Region.svs")
    fast = ["--set", "sat.reference.augment=false", "--set", "sat.decode.mode=map",
            "--set", "sat.pixel.enabled=false", "--device", "cpu"]
    fractions = {}
    for on in ("true", "false"):
        out = tmp_path / on
        result = CliRunner().invoke(app, ["run", str(slide), *reference_args, "--out", str(out),
                                          "--set", f"sat.open_set.enabled={on}",
                                          "--set", f"sat.open_set.slide_decision={on}", *fast])
        assert result.exit_code == 0, result.output
        pred = read_level(out / "CMU-1-Small-Region.ome.zarr", 1) > 0
        with tiffslide.TiffSlide(slide) as s:
            thumb = np.asarray(s.get_thumbnail((pred.shape[1], pred.shape[0])).convert("RGB"))
        tissue = resize_mask(tissue_mask(thumb, WsiConfig(), min_area_px=64,
                                         max_hole_px=20000 / (0.62 * 2) ** 2),
                             (pred.shape[1], pred.shape[0]))
        fractions[on] = ((pred & tissue).sum() / tissue.sum(), (pred & ~tissue).sum() / tissue.sum())
    assert fractions["true"][0] < 0.05 < 0.3 < fractions["false"][0]
    assert fractions["true"][1] < 0.01  # no halo on the glass
