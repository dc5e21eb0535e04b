"""Real whole-slide files from ../shared/data/slides through `wsi-sat run` (real MobileSAM)."""

import json

import pytest
from click.testing import CliRunner

from tests.conftest import shared_or_skip
from wsi_sat.cli import app

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
