"""The reliability matrix: every case a new user or a hostile input tried against `wsi-sat`,
through the command line, with its expected exit code, the pattern of its one-line message and
what may remain in `--out` afterwards.

The model does not matter here, so `Segmenter.from_config` is replaced by the fast fake engine
(tests/conftest.py); the kill/resume cases with the real MobileSAM are in test_kill.py. Each row
names where it came from ("issue": found by the review of issue 14; "added": found while
building this matrix). `python -m pytest tests/reliability/test_matrix.py -v` prints the matrix.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import FakeEngine, blobs_image
from wsi_sat.cli import app
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.pipeline.verify import check_output
from wsi_sat.segmenter import Segmenter
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff

MPP = 0.5
FAST = ["sat.pixel.enabled: false", "sat.postprocess.min_area_px: 16", "sat.decode.mode: map",
        "wsi.tile_px: 256", "wsi.overlap_px: 32", "wsi.batch_tiles: 2",
        "wsi.pyramid_min_px: 64", "wsi.min_tissue_area_um2: 100"]


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (a decompression bomb), with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _yaml_tree(lines: list[str]) -> str:
    tree: dict[str, dict[str, str]] = {}
    for line in lines:
        key, value = line.split(": ")
        section, name = key.split(".", 1)
        node = tree.setdefault(section, {})
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[leaf] = value
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(tree)))


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("matrix")
    pairs = [blobs_image(40 + i, size=(200, 240), n=4) for i in range(6)]
    image, _ = mosaic(pairs, cols=3, cell_hw=(200, 240), gap_px=40)
    write_pyramidal_tiff(d / "case.1.tif", image, MPP, tile_px=128, min_px=256)
    shutil.copy(d / "case.1.tif", d / "case.2.tif")
    (d / "cohort").mkdir()
    for name in ("a.tif", "b.tif"):
        shutil.copy(d / "case.1.tif", d / "cohort" / name)
    (d / "twins" / "x").mkdir(parents=True)
    (d / "twins" / "y").mkdir(parents=True)
    shutil.copy(d / "case.1.tif", d / "twins" / "x" / "s.tif")
    shutil.copy(d / "case.1.tif", d / "twins" / "y" / "s.tif")
    data = (d / "case.1.tif").read_bytes()
    (d / "truncated.svs").write_bytes(data[: len(data) // 2])
    _corrupt_one_tile(d / "case.1.tif", d / "corrupt_tile.tif")
    (d / "text.svs").write_text("not a slide")
    (d / "empty.svs").write_bytes(b"")
    white = np.full((600, 700, 3), 255, np.uint8)
    write_pyramidal_tiff(d / "white.tif", white, MPP, tile_px=128, min_px=256)
    write_pyramidal_tiff(d / "wide.tif", np.full((8, 100000, 3), 180, np.uint8), MPP,
                         tile_px=128, min_px=1 << 30)
    write_pyramidal_tiff(d / "tall.tif", np.full((100000, 8, 3), 180, np.uint8), MPP,
                         tile_px=128, min_px=1 << 30)
    Image.fromarray(image).save(d / "nompp.tif")  # a plain TIFF: no resolution tags
    ref, mask = blobs_image(0)
    Image.fromarray(ref).save(d / "ref.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(d / "ref_mask.png")
    Image.fromarray(np.zeros_like(mask, np.uint8)).save(d / "empty_mask.png")
    Image.fromarray(np.full(mask.shape, 255, np.uint8)).save(d / "full_mask.png")
    Image.fromarray(mask[:100, :100].astype(np.uint8) * 255).save(d / "small_mask.png")
    Image.fromarray((ref.astype(np.uint16) * 257)[..., 0]).save(d / "ref16.png")  # 16-bit grey
    Image.fromarray(ref).convert("L").save(d / "ref_grey.png")
    rgba = np.dstack([ref, np.where(mask, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "ref_rgba.png")
    Image.fromarray(ref).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "ref_pal.png")
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    Image.fromarray(labels.astype(np.uint8)).save(d / "label_mask.png")
    target = blobs_image(7)[0]
    Image.fromarray(target).save(d / "target.png")
    (d / "targets").mkdir()
    Image.fromarray(target).save(d / "targets" / "good.png")
    (d / "targets" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _png_header(d / "bomb.png", 40000, 40000)
    (d / "fast.yaml").write_text(_yaml_tree(FAST))
    (d / "tag.yaml").write_text("sat: !!python/object/apply:os.system ['echo pwned']\n")
    (d / "cluster_tag.yaml").write_text("slurm: !!python/object/apply:os.system ['echo x']\n")
    (d / "evil.pt").write_bytes(_evil_pickle())
    (d / "a_file").write_text("x")

    def feat(ring, cls="Gland"):
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": cls}}}

    def box(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]

    geo = {"outside.geojson": [feat(box(5000, 5000, 5100, 5100))],
           "negative.geojson": [feat(box(-300, -300, -100, -100))],
           "two_points.geojson": [feat([[10, 10], [60, 60]])],
           "bowtie.geojson": [feat([[20, 20], [200, 200], [200, 20], [20, 200], [20, 20]])],
           "empty_array.geojson": [],
           "good.geojson": [feat(box(20, 20, 220, 180))]}
    for name, features in geo.items():
        (d / name).write_text(json.dumps(features))
    nan_ring = box(20, 20, 220, 180)
    nan_ring[1] = [float("nan"), 20]
    (d / "nan.geojson").write_text(json.dumps([feat(nan_ring)]))  # Python writes NaN
    (d / "inf.geojson").write_text(json.dumps([feat(box(20, 20, 220, 180))]).replace(
        "220", "1e999", 1))
    (d / "deep.geojson").write_text("[" * 100_000 + "]" * 100_000)
    inner = {"type": "GeometryCollection", "geometries": [
        {"type": "Polygon", "coordinates": [box(20, 20, 220, 180)]},
        {"type": "Polygon", "coordinates": [box(100, 60, 300, 200)]}]}  # overlapping parts
    (d / "collection.geojson").write_text(json.dumps([{
        "type": "Feature", "properties": {"classification": {"name": "Gland"}},
        "geometry": {"type": "GeometryCollection", "geometries": [inner]}}]))
    _scale_and_format_traps(d, image)
    (d / "cohort.csv").write_text("path,mpp\n# nompp.tif has no pixel size of its own\n"
                                  "nompp.tif,0.5\ncase.2.tif\n")
    (d / "bad_mpp.tsv").write_text("nompp.tif\t50000\n")
    (d / "missing.txt").write_text("case.1.tif\nnot_there.svs\n")
    return d


def _scale_and_format_traps(d: Path, image: np.ndarray) -> None:
    """Slides that lie about their pixel size, hold 16-bit or float samples, have a level
    without pixels, or end before their first directory."""
    import tifffile

    write_pyramidal_tiff(d / "liar.tif", image, MPP * 100, tile_px=128, min_px=256)
    for name, dtype, scale in (("u16.tif", np.uint16, 257), ("f32.tif", np.float32, 1 / 255)):
        tifffile.imwrite(d / name, (image.astype(np.float64) * scale).astype(dtype),
                         tile=(128, 128), photometric="rgb", resolution=(1e4 / MPP, 1e4 / MPP),
                         resolutionunit="CENTIMETER")
    data = bytearray((d / "case.1.tif").read_bytes())
    with tifffile.TiffFile(d / "case.1.tif") as tif:
        tag = tif.series[0].levels[0].keyframe.tags["ImageWidth"]
        fmt = tif.byteorder + ("H" if int(tag.dtype) == 3 else "I")
        struct.pack_into(fmt, data, tag.valueoffset, 0)
    (d / "zero_width.tif").write_bytes(bytes(data))
    # the first 100 kB of a slide whose first directory lies further on (as SVS files do)
    (d / "head.svs").write_bytes(b"II*\x00" + struct.pack("<I", 1_275_950) + bytes(100_000))


def _corrupt_one_tile(src: Path, dst: Path) -> None:
    """A copy of `src` whose level-0 tile 5 holds garbage (thumbnail levels intact)."""
    import tifffile

    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    data[offset: offset + count] = bytes(range(256)) * (count // 256) + b"\x00" * (count % 256)
    dst.write_bytes(bytes(data))


def _evil_pickle() -> bytes:
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    return pickle.dumps({"model": Evil()})


def _fake_from_config(cls, config=None, **_kw):
    from wsi_sat.config import load_config

    return Segmenter(FakeEngine(), SamEncoderFeatures(), config or load_config())


@pytest.fixture()
def cli(monkeypatch):
    monkeypatch.setattr(Segmenter, "from_config", classmethod(_fake_from_config))

    def invoke(argv: list[str]) -> tuple[int, str]:
        result = CliRunner().invoke(app, argv)
        if result.exception and not isinstance(result.exception, SystemExit):
            import traceback

            return 1, "".join(traceback.format_exception(result.exception))
        return result.exit_code, result.output

    return invoke


def _fault(target: str, exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """Patch `module:function` to raise `exc` (a full disk, a kill, Ctrl-C)."""
    module, name = target.split(":")

    def apply(mp: pytest.MonkeyPatch) -> None:
        import importlib

        def boom(*_a, **_k):
            raise exc

        mp.setattr(importlib.import_module(module), name, boom)

    return apply


def _short_connect_timeout(mp: pytest.MonkeyPatch) -> None:
    import dask
    import distributed  # noqa: F401 - loads distributed's config

    mp.setitem(dask.config.config["distributed"]["comm"]["timeouts"], "connect", "2s")


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


@dataclass
class Case:
    id: str
    argv: str
    exit: int
    message: str = ""  # a substring of the one error line ("" for exit 0)
    remains: str = "nothing"  # nothing | incomplete | complete | any
    origin: str = "issue"
    fault: Callable[[pytest.MonkeyPatch], None] | None = None
    then: list[str] = field(default_factory=list)  # commands after the fault (each exit 0)
    fake: bool = True  # the fake engine (False: the real model loader)


RUN = "run {d}/case.1.tif --reference {d}/ref.png --reference-mask {d}/ref_mask.png " \
      "--config {d}/fast.yaml --out {o}"
GEO = "run {d}/case.1.tif --reference-geojson {d}/%s --reference-slide {d}/case.1.tif " \
      "--config {d}/fast.yaml --out {o}"
SEG = "segment {d}/target.png --reference {d}/%s --reference-mask {d}/ref_mask.png " \
      "--config {d}/fast.yaml --out {o}"
CACHED = "run {d}/case.1.tif --reference-cache {d}/ref.wsisat --config {d}/fast.yaml --out {o}"
MINE = "run {d}/%s --reference {d}/ref.png --reference-mask {d}/ref_mask.png " \
       "--config {d}/fast.yaml --out {o}"

CASES = [
    # --- what held before and must stay held
    Case("slide: text file", MINE % "text.svs", 2, "cannot open"),
    Case("slide: empty file", MINE % "empty.svs", 2, "cannot open"),
    Case("slide: missing", MINE % "missing.svs", 2, "not found"),
    Case("slide: empty glob", MINE % "nothing*.svs", 2, "no slide matches"),
    Case("slide: no pixel size", MINE % "nompp.tif", 2, "--slide-mpp"),
    Case("slide: no pixel size, --slide-mpp given", MINE % "nompp.tif" + " --slide-mpp 0.5", 0,
         remains="complete"),
    Case("mask: empty", RUN.replace("ref_mask", "empty_mask"), 2, "empty"),
    Case("mask: the whole image", RUN.replace("ref_mask", "full_mask"), 2, "whole image"),
    Case("mask: wrong size", RUN.replace("ref_mask", "small_mask"), 2, "same size"),
    Case("reference: 16-bit grey", SEG % "ref16.png", 0, remains="any"),
    Case("reference: grey", SEG % "ref_grey.png", 0, remains="any"),
    Case("reference: RGBA", SEG % "ref_rgba.png", 0, remains="any"),
    Case("reference: palette", SEG % "ref_pal.png", 0, remains="any"),
    Case("reference: instance-label mask 0..n",
         (SEG % "ref.png").replace("ref_mask.png", "label_mask.png"), 0, remains="any"),
    Case("slide: all white", MINE % "white.tif", 0, remains="complete"),
    Case("config: YAML python tag", RUN + " --config {d}/tag.yaml", 2, "config"),
    Case("weights: a pickle that runs code", SEG % "ref.png"
         + " --set models.sam.checkpoint={d}/evil.pt", 2, "not a readable PyTorch checkpoint",
         fake=False),
    # --- wrong or lost results with exit 0 (now: refused, or the same result)
    Case("kill after the store's rename, before the GeoJSON; --resume", RUN, 137,
         remains="incomplete", fault=_fault("wsi_sat.pipeline.finalize:write_geojson",
                                            SystemExit(137)), then=[RUN + " --resume"]),
    Case("disk full writing the overview; --resume", RUN, 2, "No space left",
         remains="incomplete", fault=_fault("wsi_sat.pipeline.finalize:write_overview",
                                            _enospc()), then=[RUN + " --resume"]),
    Case("disk full during the tiles; --resume", RUN, 2, "No space left",
         remains="incomplete", fault=_fault("wsi_sat.pipeline.batch:write_atomic", _enospc()),
         then=[RUN + " --resume"]),
    Case("resume with another reference", RUN.replace("ref.png", "ref_grey.png") + " --resume",
         2, "other inputs", remains="incomplete"),
    Case("resume with another --tile-px", RUN + " --tile-px 224 --resume", 2, "other inputs",
         remains="incomplete"),
    Case("a second run into a locked --out", RUN, 2, "pid", remains="any"),
    Case("names: case.1.tif and case.2.tif", MINE % "case.*.tif", 0, remains="complete"),
    Case("names: two slides called s.tif", MINE % "twins/*/s.tif", 2, "would both write",
         origin="added"),
    Case("annotation outside the slide", GEO % "outside.geojson", 2, "outside"),
    Case("annotation at negative coordinates", GEO % "negative.geojson", 2, "outside"),
    # --- tracebacks before, now one line
    Case("slide: truncated", MINE % "truncated.svs", 2, "truncated or corrupt"),
    Case("--out is a file (run)", RUN.replace("{o}", "{d}/a_file"), 2, "is a file"),
    Case("--out is a file (segment)", (SEG % "ref.png").replace("{o}", "{d}/a_file"), 2,
         "is a file"),
    Case("--out read-only", RUN, 2, "not writable"),
    Case("--mpp nan", RUN + " --mpp nan", 2, "plausible"),
    Case("--mpp 0.0001 (a hang before)", RUN + " --mpp 0.0001", 2, "plausible"),
    Case("--slide-mpp -1", RUN + " --slide-mpp -1", 2, "plausible"),
    Case("--slide-mpp 1e9 (a hang before)", RUN + " --slide-mpp 1e9", 2, "plausible"),
    Case("--reference-mpp inf", RUN + " --reference-mpp inf", 2, "plausible"),
    Case("a grid too large to plan", RUN + " --slide-mpp 50 --mpp 0.02 --allow-upsampling", 2,
         "tiles", origin="added"),
    Case("--scheduler unreachable", RUN + " --scheduler tcp://127.0.0.1:9", 2, "scheduler",
         fault=lambda mp: _short_connect_timeout(mp)),
    Case("--scheduler malformed", RUN + " --scheduler ::nonsense::", 2, "scheduler"),
    Case("--cluster YAML python tag", RUN + " --cluster {d}/cluster_tag.yaml", 2, "cluster"),
    Case("reference: PNG header 40000 x 40000", SEG % "bomb.png", 2, "pixels"),
    Case("target: PNG header 40000 x 40000",
         (SEG % "ref.png").replace("{d}/target.png", "{d}/bomb.png"), 2, "pixels"),
    Case("GeoJSON: []", GEO % "empty_array.geojson", 2, "no polygon"),
    Case("GeoJSON: a 2-point polygon", GEO % "two_points.geojson", 2, "polygon"),
    Case("GeoJSON: a self-crossing polygon (repaired)", GEO % "bowtie.geojson", 0,
         remains="complete", origin="added"),
    Case("slide: 100000 x 8 px", MINE % "wide.tif", 2, "smaller than"),
    Case("slide: 8 x 100000 px", MINE % "tall.tif", 2, "smaller than"),
    Case("tile/overlap: overlap >= tile", RUN + " --tile-px 256 --overlap-px 256", 2,
         "overlap", origin="added"),
    Case("workers: negative", RUN + " --workers -1", 2, "workers", origin="added"),
    # --- minor
    Case("Ctrl-C mid-run", RUN, 130, "--resume", remains="incomplete",
         fault=_fault("wsi_sat.pipeline.batch:write_atomic", KeyboardInterrupt())),
    Case("a corrupt tile mid-slide", MINE % "corrupt_tile.tif" + " --set wsi.thumbnail_px=256",
         2, "level 0", remains="incomplete"),  # the thumbnail reads level 1: intact
    Case("segment: a corrupt image among good ones",
         "segment {d}/targets --reference {d}/ref.png --reference-mask {d}/ref_mask.png "
         "--config {d}/fast.yaml --out {o}", 2, "could not be read", remains="any"),
    Case("cohort --resume skips finished slides", MINE % "cohort" + " --resume", 0,
         remains="complete"),
    # --- the reference cache (issue 15's SLURM arrays)
    Case("run from a prepared reference", CACHED, 0, remains="complete", origin="added",
         then=[]),
    Case("reference cache of another config", CACHED + " --set sat.open_set.restarts=2", 2,
         "another config", origin="added"),
    Case("reference cache missing", CACHED.replace("{d}/ref.wsisat", "{d}/none.wsisat"), 2,
         "not found", origin="added"),
    Case("reference cache damaged", CACHED.replace("{d}/ref.wsisat", "{d}/ref_mask.png"), 2,
         "not a wsi-sat reference cache", origin="added"),
    Case("--reference-cache with --reference", CACHED + " --reference {d}/ref.png", 2,
         "not both", origin="added"),
    # --- issue 31: an independent matrix's bad cases
    Case("slide: says 50 µm/px, really 0.5 (would upsample 100x)",
         MINE % "liar.tif" + " --reference-mpp 0.5", 2, "--slide-mpp", origin="issue 31"),
    Case("slide: the lie corrected with --slide-mpp",
         MINE % "liar.tif" + " --reference-mpp 0.5 --slide-mpp 0.5", 0, remains="complete",
         origin="issue 31"),
    Case("--mpp 0.1 on a 0.5 µm/px slide", RUN + " --mpp 0.1", 2, "--allow-upsampling",
         origin="issue 31"),
    Case("slide: a pyramid level 0 px wide", MINE % "zero_width.tif", 2, "truncated or corrupt",
         origin="issue 31"),
    Case("slide: the first 100 kB of an SVS", MINE % "head.svs", 2, "truncated or corrupt",
         origin="issue 31"),
    Case("slide: 16-bit samples", MINE % "u16.tif", 2, "8-bit", origin="issue 31"),
    Case("slide: float32 samples", MINE % "f32.tif", 2, "8-bit", origin="issue 31"),
    Case("GeoJSON: a NaN vertex", GEO % "nan.geojson", 2, "NaN", origin="issue 31"),
    Case("GeoJSON: an Infinity vertex", GEO % "inf.geojson", 2, "not a finite number",
         origin="issue 31"),
    Case("GeoJSON: arrays nested 100000 deep", GEO % "deep.geojson", 2, "nests",
         origin="issue 31"),
    Case("GeoJSON: a GeometryCollection of polygons", GEO % "collection.geojson", 0,
         remains="complete", origin="issue 31"),
    Case("reference cache: meta.json is []", CACHED.replace("ref.wsisat", "meta_list.wsisat"),
         2, "malformed", origin="issue 31"),
    Case("reference cache: another threshold, re-zipped",
         CACHED.replace("ref.wsisat", "threshold.wsisat"), 2, "edited", origin="issue 31"),
    Case("reference cache: the feature bank zeroed",
         CACHED.replace("ref.wsisat", "zero_bank.wsisat"), 2, "edited", origin="issue 31"),
    Case("a 0-byte lock left by a crash", RUN, 0, remains="complete", origin="issue 31"),
    # --- issue 32: scale traps
    Case("a slide list: one slide's pixel size in its second column", MINE % "cohort.csv", 0,
         remains="complete", origin="issue 32"),
    Case("a slide list: an implausible pixel size", MINE % "bad_mpp.tsv", 2, "line 1",
         origin="issue 32"),
    Case("a slide list: a slide that is not there", MINE % "missing.txt", 2, "line 2",
         origin="issue 32"),
    Case("--mpp 4.6x finer than level 0 (--mpp 0.108)", RUN + " --mpp 0.108", 2,
         "4.6x finer", origin="issue 32"),
    Case("a rerun killed in its tiles: summary.csv no longer says done", RUN, 137,
         remains="any", origin="issue 31",
         fault=_fault("wsi_sat.pipeline.batch:write_atomic", SystemExit(137))),
]


def _remains(out: Path, what: str) -> None:
    if what == "any":
        return
    # kept encodings (`<out>/encodings`, signed, reused by a rerun) are a cache, not outputs
    files = [p for p in out.rglob("*") if p.is_file() and "encodings" not in
             p.relative_to(out).parts[:1]] if out.exists() else []
    complete = [p for p in files if p.name.endswith(".run.json")]
    if what == "nothing":
        assert not files, f"left in --out: {[p.name for p in files]}"
    elif what == "incomplete":
        assert not complete, "a run.json (looks complete) beside an unfinished run"
        assert not list(out.glob("*.lock")), "a lock left behind"
    elif what == "complete":
        checks = check_output(out)
        assert checks and all(c.ok for c in checks), [c.problems for c in checks]


def _one_error_line(output: str, message: str) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith(("error:", "interrupted:"))]
    assert len(errors) == 1 and message in errors[0], output
    noise = [line for line in output.splitlines() if "Task was destroyed" in line
             or "asyncio" in line]
    assert not noise, output


def _outputs_equal(a: Path, b: Path) -> None:
    from wsi_sat.writers.ome_zarr import read_level

    for stem in sorted(p.name[: -len(".run.json")] for p in a.glob("*.run.json")):
        la, lb = read_level(a / f"{stem}.ome.zarr", 0), read_level(b / f"{stem}.ome.zarr", 0)
        assert np.array_equal(la, lb), stem
        ga = json.loads((a / f"{stem}.geojson").read_text())
        gb = json.loads((b / f"{stem}.geojson").read_text())
        assert ga == gb, stem


@pytest.fixture(scope="module")
def clean_run(d, tmp_path_factory) -> Path:
    """The uninterrupted run the resumed ones must equal."""
    out = tmp_path_factory.mktemp("clean") / "o"
    mp = pytest.MonkeyPatch()
    mp.setattr(Segmenter, "from_config", classmethod(_fake_from_config))
    try:
        result = CliRunner().invoke(app, RUN.format(d=d, o=out).split())
        assert result.exit_code == 0, result.output
        prepare = ("reference prepare --reference {d}/ref.png --reference-mask {d}/ref_mask.png "
                   "--config {d}/fast.yaml --out {d}/ref.wsisat")
        result = CliRunner().invoke(app, prepare.format(d=d).split())
        assert result.exit_code == 0, result.output
    finally:
        mp.undo()
    return out


def _prepare(case: Case, d: Path, out: Path, clean_run: Path) -> None:
    """State a case starts from: a finished or locked --out, a read-only one."""
    mp = pytest.MonkeyPatch()
    mp.setattr(Segmenter, "from_config", classmethod(_fake_from_config))
    try:
        if case.id.startswith("resume with another"):  # killed after 2 of 8 batches
            import wsi_sat.pipeline.batch as batch

            written = []
            original = batch.write_atomic

            def write_then_kill(path, write):
                if len(written) == 2:
                    raise SystemExit(137)
                written.append(path)
                return original(path, write)

            mp.setattr(batch, "write_atomic", write_then_kill)
            argv = RUN.format(d=d, o=out).split()
            assert CliRunner().invoke(app, argv).exit_code == 137
            assert len(list(out.rglob("*.json"))) >= 2
        if case.id.startswith("cohort --resume"):
            argv = (MINE % "cohort").format(d=d, o=out).split()
            assert CliRunner().invoke(app, argv).exit_code == 0
    finally:
        mp.undo()
    if case.id.startswith("a 0-byte lock"):
        out.mkdir()
        (out / "case.1.lock").write_bytes(b"")
    if case.id.startswith("a rerun killed"):
        shutil.copytree(clean_run, out)
    if case.id.startswith("reference cache:"):
        _edited_caches(d)
    if case.id.startswith("a second run"):
        out.mkdir()
        (out / "case.1.lock").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": "2026-12-04T00:00:00Z"}))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(case: Case, d: Path, tmp_path: Path, cli, monkeypatch, clean_run: Path):
    out = tmp_path / "out"
    _prepare(case, d, out, clean_run)
    argv = case.argv.format(d=d, o=out).split()
    if case.id == "--out read-only":
        code, output = _run_read_only(argv, d, out)
    else:
        if case.fault:
            case.fault(monkeypatch)
        if not case.fake:
            monkeypatch.undo()
        code, output = cli(argv)
        monkeypatch.undo()
        monkeypatch.setattr(Segmenter, "from_config", classmethod(_fake_from_config))
    _report(case, code, output)
    assert code == case.exit, output
    if code != 0 and code != 137:
        _one_error_line(output, case.message)
    if case.id.startswith("a second run"):
        assert json.loads((out / "case.1.lock").read_text())["pid"] == os.getpid()
    _remains(out, case.remains)
    if case.id.startswith("cohort --resume"):
        assert output.count("already done") == 2, output
    if case.id.startswith("a slide list: one"):
        runs = {p.name: json.loads(p.read_text()) for p in out.glob("*.run.json")}
        assert runs["nompp.run.json"]["slide"]["mpp_source"] == "slide list"
        assert runs["case.2.run.json"]["slide"]["mpp_source"] == "metadata"
    if case.id.startswith("a rerun killed"):
        import pandas as pd

        [row] = pd.read_csv(out / "summary.csv").to_dict("records")
        assert row["status"] == "unfinished", row
        assert not all(c.ok for c in check_output(out))
    for then in case.then:
        code, output = cli(then.format(d=d, o=out).split())
        assert code == 0, output
    if case.then or case.id == "run from a prepared reference":
        _remains(out, "complete")
        _outputs_equal(clean_run, out)


def _report(case: Case, code: int, output: str) -> None:
    """With WSI_SAT_MATRIX_REPORT=FILE, a JSON line per case (case, exit, the error line):
    the matrix as a table for a report."""
    path = os.environ.get("WSI_SAT_MATRIX_REPORT")
    if path:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        with open(path, "a") as f:
            f.write(json.dumps({"case": case.id, "exit": code, "expected": case.exit,
                                "message": errors[-1] if errors else ""}) + "\n")


def _edited_caches(d: Path) -> None:
    """Copies of the prepared reference with one member edited (and re-zipped)."""
    import io
    import zipfile

    with zipfile.ZipFile(d / "ref.wsisat") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members["meta.json"])
    meta["embeddings"]["tiles"]["calibration"]["threshold"] = 0.99
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["tiles.bank"] = np.zeros_like(arrays["tiles.bank"])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    for name, edit in (("meta_list.wsisat", {"meta.json": b"[]"}),
                       ("threshold.wsisat", {"meta.json": json.dumps(meta).encode()}),
                       ("zero_bank.wsisat", {"arrays.npz": buf.getvalue()})):
        with zipfile.ZipFile(d / name, "w") as zf:
            for member, data in {**members, **edit}.items():
                zf.writestr(member, data)


def _run_read_only(argv: list[str], d: Path, out: Path) -> tuple[int, str]:
    """A read-only --out: as another user when the tests run as root (root writes anywhere),
    on copies of the inputs that user can read."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="wsi-sat-ro-"))
    os.chmod(base, 0o755)
    for name in ("case.1.tif", "ref.png", "ref_mask.png", "fast.yaml"):
        shutil.copy(d / name, base / name)
        os.chmod(base / name, 0o644)
    ro = base / "out"
    ro.mkdir()
    os.chmod(ro, 0o555)
    argv = [a.replace(str(out), str(ro)).replace(str(d), str(base)) for a in argv]
    cmd = [sys.executable, "-m", "wsi_sat.cli", *argv]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        repo = Path(__file__).resolve().parents[2]
        if any(not os.stat(p).st_mode & 0o001 for p in (repo, *repo.parents)):
            pytest.skip(f"the checkout {repo} is not reachable by another user (a private "
                        "parent folder): cannot run as one")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                              cwd=base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return proc.returncode, proc.stdout + proc.stderr
