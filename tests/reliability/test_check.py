"""`wsi-sat check` against damaged folders: every kind of damage an independent review found
passing as `ok` (issue 31) is named, exit 2. Two sets: damage the manifest sees (a byte, a chunk,
a file), and outputs rewritten whole with the manifest and run.json re-signed to match, which
only the cross-checks (levels, labels, polygons, counts) can see."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from tests.reliability.test_runs import _run
from wsi_sat.cli import app
from wsi_sat.pipeline.plan import OutputPaths
from wsi_sat.writers.manifest import build_manifest, sign_record, write_manifest
from wsi_sat.writers.ome_zarr import FORMAT

STEM = "case.1"


@pytest.fixture(scope="module")
def finished(slide_module, fake_engine_module, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("check") / "o"
    _run(fake_engine_module, slide_module, out)
    return out


@pytest.fixture(scope="module")
def slide_module(tmp_path_factory):
    from tests.conftest import blobs_image
    from wsi_sat.synthetic import mosaic, write_pyramidal_tiff

    d = tmp_path_factory.mktemp("slide")
    pairs = [blobs_image(40 + i, size=(200, 240), n=4) for i in range(6)]
    image, _ = mosaic(pairs, cols=3, cell_hw=(200, 240), gap_px=40)
    write_pyramidal_tiff(d / f"{STEM}.tif", image, 0.5, tile_px=128, min_px=256)
    return d / f"{STEM}.tif"


@pytest.fixture(scope="module")
def fake_engine_module():
    from tests.conftest import FakeEngine

    return FakeEngine()


def _check(out: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", str(out), *flags])
    return result.exit_code, result.output


def _chunk(out: Path, level: int) -> Path:
    store = out / f"{STEM}.ome.zarr" / str(level)
    return sorted(p for p in store.rglob("*") if p.is_file() and p.parent != store)[0]


def _flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _level0(out: Path) -> zarr.Array:
    return zarr.open_array(str(out / f"{STEM}.ome.zarr" / "0"), mode="r+", **FORMAT)


def _zero_level0(out: Path) -> None:
    arr = _level0(out)
    arr[:] = 0


def _flip_level0(out: Path) -> None:
    arr = _level0(out)
    arr[:] = np.ascontiguousarray(np.asarray(arr[:])[::-1])


def _edit_geojson(out: Path, edit: Callable[[dict], None]) -> None:
    path = out / f"{STEM}.geojson"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _move_polygon(doc: dict) -> None:
    geom = doc["features"][0]["geometry"]
    shift = lambda ring: [[x + 300, y + 200] for x, y in ring]  # noqa: E731
    if geom["type"] == "Polygon":
        geom["coordinates"] = [shift(r) for r in geom["coordinates"]]
    else:
        geom["coordinates"] = [[shift(r) for r in p] for p in geom["coordinates"]]


def _edit_csv(out: Path) -> None:
    path = out / f"{STEM}.objects.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[4] = "12345.0"
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _extra_chunk(out: Path) -> None:
    chunk = _chunk(out, 0)
    shutil.copy(chunk, chunk.parent / "99")


def _edit_run_json(out: Path) -> None:
    path = out / f"{STEM}.run.json"
    record = json.loads(path.read_text())
    record["objects"] += 1
    path.write_text(json.dumps(record))


def _resign(out: Path) -> None:
    """As if every output had been rewritten whole by a run: a fresh manifest and run.json
    hash over what is on disk now (the cross-checks must still find the disagreement)."""
    paths = OutputPaths(STEM, out)
    record = json.loads(paths.run_json.read_text())
    files = [paths.geojson, paths.tissue_geojson, paths.overview, paths.objects_csv,
             *[Path(p) for p in record["tables"][1:]]]
    manifest = build_manifest(out, files, paths.zarr)
    record["manifest"]["sha256"] = write_manifest(paths.manifest, manifest)
    paths.run_json.write_text(json.dumps(sign_record(record)))


def _copy_level_up(out: Path) -> None:
    """Level 1 replaced by a level of another content (its shape kept)."""
    arr = zarr.open_array(str(out / f"{STEM}.ome.zarr" / "1"), mode="r+", **FORMAT)
    arr[:] = np.ascontiguousarray(np.asarray(arr[:])[:, ::-1])


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "a level-0 chunk deleted": (lambda o: _chunk(o, 0).unlink(), "label store"),
    "a level-1 chunk deleted": (lambda o: _chunk(o, 1).unlink(), "label store"),
    "one byte flipped inside a chunk": (lambda o: _flip_byte(_chunk(o, 0)), "label store"),
    "level 0 overwritten with zeros": (_zero_level0, "label store"),
    "level 0 flipped": (_flip_level0, "label store"),
    "tissue.geojson deleted": (lambda o: (o / f"{STEM}.tissue.geojson").unlink(),
                               "tissue.geojson' is missing"),
    "tissue.geojson truncated": (lambda o: _truncate(o / f"{STEM}.tissue.geojson"),
                                 "tissue.geojson' is changed"),
    "overview.png deleted": (lambda o: (o / f"{STEM}.overview.png").unlink(),
                             "overview.png' is missing"),
    "overview.png truncated": (lambda o: _truncate(o / f"{STEM}.overview.png"),
                               "overview.png' is changed"),
    "summary.csv deleted": (lambda o: (o / "summary.csv").unlink(), "summary.csv"),
    "summary.csv truncated": (lambda o: _truncate(o / "summary.csv"), "summary.csv"),
    "a polygon moved": (lambda o: _edit_geojson(o, _move_polygon), "geojson' is changed"),
    "a CSV value edited": (_edit_csv, "objects.csv' is changed"),
    "a chunk added": (_extra_chunk, "did not write"),
    "run.json edited": (_edit_run_json, "run.json was edited"),
    "manifest deleted": (lambda o: (o / f"{STEM}.manifest.json").unlink(), "manifest"),
    "a leftover .part file": (lambda o: (o / f".{STEM}.geojson.x1y2.part").write_text("{"),
                              "left from an unfinished"),
}

# damage that leaves each file well-formed, then the manifest re-signed: cross-checks only
RESIGNED: dict[str, tuple[Callable[[Path], None], str]] = {
    "level 0 zeros beside the GeoJSON": (_zero_level0, "not in the store"),
    "level 0 flipped": (_flip_level0, "disagree"),
    "level 1 not level 0 subsampled": (_copy_level_up, "level 1 differs"),
    "a polygon moved": (lambda o: _edit_geojson(o, _move_polygon), "disagree"),
    "a feature dropped": (lambda o: _edit_geojson(o, lambda d: d["features"].pop()),
                          "the GeoJSON holds"),
}


def test_an_intact_folder_is_ok(finished):
    assert _check(finished) == (0, f"{STEM}: ok\n")
    assert _check(finished, "--quick")[0] == 0


def _damaged(finished: Path, tmp_path: Path, damage: Callable[[Path], None],
             resign: bool) -> tuple[int, str]:
    """`wsi-sat check` of a copy of the finished folder with `damage` done to it (and, with
    `resign`, the manifest and run.json's hash made again to match)."""
    out = tmp_path / "o"
    shutil.copytree(finished, out)
    damage(out)
    if resign:
        _resign(out)
    return _check(out)


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_named(finished, tmp_path, name):
    damage, message = DAMAGE[name]
    code, output = _damaged(finished, tmp_path, damage, resign=False)
    assert code == 2 and message in output and "Traceback" not in output, output


@pytest.mark.parametrize("name", list(RESIGNED))
def test_consistent_looking_damage_is_named_by_the_cross_checks(finished, tmp_path, name):
    damage, message = RESIGNED[name]
    code, output = _damaged(finished, tmp_path, damage, resign=True)
    assert code == 2 and message in output, output


def test_quick_sees_missing_and_resized_files_only(finished, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(finished, out)
    _flip_byte(_chunk(out, 0))  # same size: only the full check reads it
    assert _check(out, "--quick")[0] == 0
    assert _check(out)[0] == 2
    (out / f"{STEM}.overview.png").unlink()
    code, output = _check(out, "--quick")
    assert code == 2 and "overview.png' is missing" in output
