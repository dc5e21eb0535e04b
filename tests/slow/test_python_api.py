"""examples/python_api.py (the documented Python API) writes the CLI's exact outputs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from tests.conftest import shared_or_skip
from wsi_sat.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "sat.reference.augment=false", "--set", "sat.decode.mode=map",
        "--set", "sat.pixel.enabled=false", "--set", "wsi.tile_px=512",
        "--set", "wsi.overlap_px=64", "--set", "runtime.device=cpu"]


def _levels(store: Path) -> list[np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return [group[k][:] for k in sorted(group.array_keys())]


def test_python_api_example_gives_the_cli_outputs(tmp_path):
    glas = shared_or_skip("data", "tiles", "glas_colon_glands")
    slide = shared_or_skip("data", "slides", "CMU-1-Small-Region.svs")
    Image.open(glas / "images" / "testA_1.jpg").save(tmp_path / "ref.png")
    Image.open(glas / "masks" / "testA_1.png").save(tmp_path / "ref_mask.png")
    common = ["--reference-mpp", "0.62", "--mpp", "2.0"]
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    result = CliRunner().invoke(app, ["run", str(slide), "--reference", str(tmp_path / "ref.png"),
                                      *common, *FAST, "--out", str(cli_out)])
    assert result.exit_code == 0, result.output
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"),
                           str(tmp_path / "ref.png"), str(slide), str(api_out), *common, *FAST],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    stem = "CMU-1-Small-Region"
    a, b = _levels(cli_out / f"{stem}.ome.zarr"), _levels(api_out / f"{stem}.ome.zarr")
    assert len(a) == len(b) > 1 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert (cli_out / f"{stem}.geojson").read_bytes() == (api_out / f"{stem}.geojson").read_bytes()
