"""Trustworthy runs (fast fake engine): a resume never mixes inputs, the final phase is a
transaction, one writer per output, names that do not collide, group-readable files."""

import json
import os
import socket

import numpy as np
import pytest

from tests.conftest import blobs_image
from wsi_sat import api
from wsi_sat.config import load_config
from wsi_sat.errors import OutputError, RunStateError, SlideReadError
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.pipeline import RunOptions, run_slide
from wsi_sat.pipeline.plan import check_output_names, output_stem
from wsi_sat.reference import Reference
from wsi_sat.segmenter import Segmenter
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff
from wsi_sat.writers.lock import output_lock
from wsi_sat.writers.ome_zarr import read_level

MPP = 0.5


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    d = tmp_path_factory.mktemp("slide")
    pairs = [blobs_image(40 + i, size=(200, 240), n=4) for i in range(6)]
    image, _ = mosaic(pairs, cols=3, cell_hw=(200, 240), gap_px=40)
    path = d / "case.1.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=128, min_px=256)
    return path


def _setup(fake_engine, *extra, ref_seed=0):
    cfg = load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16",
                             "sat.decode.mode=map", "wsi.tile_px=256", "wsi.overlap_px=32",
                             "wsi.batch_tiles=2", "wsi.pyramid_min_px=64",
                             "wsi.min_tissue_area_um2=100", *extra])
    seg = Segmenter(fake_engine, SamEncoderFeatures(), cfg)
    ref = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference("blobs", *blobs_image(ref_seed), "array")]))
    return seg, ref, cfg


def _run(fake_engine, path, out, *extra, ref_seed=0, **opts):
    seg, ref, cfg = _setup(fake_engine, *extra, ref_seed=ref_seed)
    return run_slide(path, ref, seg, cfg, RunOptions(out_dir=out, **opts))


def _outputs(out, stem="case.1"):
    return (read_level(out / f"{stem}.ome.zarr", 0),
            json.loads((out / f"{stem}.geojson").read_text())["features"])


def test_names_keep_every_dot_and_collisions_are_refused(tmp_path):
    for name, stem in (("case.1.tif", "case.1"), ("case1.HE.svs", "case1.HE"),
                       ("x.ome.tiff", "x"), ("plain.svs", "plain")):
        (tmp_path / name).write_bytes(b"")
        assert output_stem(tmp_path / name) == stem
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "s.svs").write_bytes(b"")
    (tmp_path / "b" / "s.svs").write_bytes(b"")
    check_output_names([tmp_path / "case.1.tif", tmp_path / "case1.HE.svs"])
    with pytest.raises(SlideReadError, match="would both write 's"):
        check_output_names([tmp_path / "a" / "s.svs", tmp_path / "b" / "s.svs"])


@pytest.mark.parametrize("change", [{"ref_seed": 3}, {"extra": ("wsi.tile_px=224",)}])
def test_resume_with_other_inputs_is_refused(slide, fake_engine, tmp_path, change):
    part = tmp_path / "part"
    _run(fake_engine, slide, part, max_batches=2)
    with pytest.raises(RunStateError, match="other inputs"):
        _run(fake_engine, slide, part, *change.get("extra", ()),
             ref_seed=change.get("ref_seed", 0), resume=True)
    # without --resume it starts afresh and completes
    _run(fake_engine, slide, part, *change.get("extra", ()), ref_seed=change.get("ref_seed", 0))
    assert (part / "case.1.run.json").is_file()


def test_a_kill_in_the_final_phase_resumes_to_the_same_outputs(slide, fake_engine, tmp_path,
                                                               monkeypatch):
    from wsi_sat.pipeline import finalize

    full, part = tmp_path / "full", tmp_path / "part"
    _run(fake_engine, slide, full)

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(finalize, "write_geojson", disk_full)
    with pytest.raises(OSError):
        _run(fake_engine, slide, part)
    assert (part / "case.1.ome.zarr").is_dir() and not (part / "case.1.run.json").exists()
    monkeypatch.undo()
    _run(fake_engine, slide, part, resume=True)  # never an emptied store
    a, b = _outputs(full), _outputs(part)
    assert np.array_equal(a[0], b[0]) and a[0].any() and a[1] == b[1]


def test_a_rerun_keeps_no_old_run_json_beside_new_outputs(slide, fake_engine, tmp_path,
                                                          monkeypatch):
    from wsi_sat.pipeline import finalize

    out = tmp_path / "o"
    _run(fake_engine, slide, out)
    monkeypatch.setattr(finalize, "write_overview", lambda *a, **k: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        _run(fake_engine, slide, out, ref_seed=3)
    assert not (out / "case.1.run.json").exists()  # nothing that looks complete


def test_a_finished_slide_is_skipped_by_a_cohort_resume(slide, fake_engine, tmp_path):
    out = tmp_path / "o"
    first = _run(fake_engine, slide, out)
    again = _run(fake_engine, slide, out, resume=True)
    assert again.skipped and again.objects == first.objects
    other = _run(fake_engine, slide, out, ref_seed=3, resume=True)  # other inputs: redone
    assert not other.skipped
    run = json.loads((out / "case.1.run.json").read_text())
    assert run["run_key"] and len(run["run_key"]) == 64
    # an output deleted since (or cut short): the slide is not done, a resume redoes it
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(p.read_bytes()[:100])):
        done = _run(fake_engine, slide, out, ref_seed=3, resume=True)
        assert done.skipped
        damage(out / "case.1.overview.png")
        redone = _run(fake_engine, slide, out, ref_seed=3, resume=True)
        assert not redone.skipped and redone.objects == other.objects
        from wsi_sat.pipeline.verify import check_output

        assert [c.problems for c in check_output(out)] == [[]]


def test_one_writer_per_output_and_stale_locks(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                "since": "now"}))
    with pytest.raises(RunStateError, match=f"pid {os.getpid()}"):
        with output_lock(lock):
            pass
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345,
                                "since": "then"}))  # no such process: stale
    with output_lock(lock):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_outputs_are_group_readable_and_out_must_be_a_folder(slide, fake_engine, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "o"
        _run(fake_engine, slide, out)
    finally:
        os.umask(old)
    for name in ("case.1.geojson", "case.1.run.json", "case.1.overview.png"):
        assert (out / name).stat().st_mode & 0o044 == 0o044, name
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        _run(fake_engine, slide, a_file)


def test_check_confirms_a_complete_folder_and_names_what_is_wrong(slide, fake_engine, tmp_path):
    from click.testing import CliRunner

    from wsi_sat.cli import app

    out = tmp_path / "o"
    _run(fake_engine, slide, out)
    result = CliRunner().invoke(app, ["check", str(out)])
    assert result.exit_code == 0 and "case.1: ok" in result.output, result.output
    # an interrupted run: shards and a .partial store, no run.json
    part = tmp_path / "part"
    _run(fake_engine, slide, part, max_batches=1)
    result = CliRunner().invoke(app, ["check", str(part)])
    assert result.exit_code == 2 and "no run.json" in result.output
    # a GeoJSON of another run put beside this run.json
    geo = json.loads((out / "case.1.geojson").read_text())
    geo["features"] = geo["features"][:1]
    (out / "case.1.geojson").write_text(json.dumps(geo))
    result = CliRunner().invoke(app, ["check", str(out)])
    assert result.exit_code == 2 and "the GeoJSON holds 1 objects" in result.output
    assert CliRunner().invoke(app, ["check", str(tmp_path / "none")]).exit_code == 2


def test_summary_csv_gathers_every_slide_of_the_folder(slide, fake_engine, tmp_path):
    """One SLURM array task per slide, all into one --out: each task's summary.csv holds every
    slide finished so far, with the objects and areas of its GeoJSON."""
    import shutil

    import pandas as pd

    other = tmp_path / "case.2.tif"
    shutil.copy(slide, other)
    out = tmp_path / "o"
    seg, ref, cfg = _setup(fake_engine)
    for path in (slide, other):  # two "array tasks": two runs of one slide each
        list(api.run_slides([path], ref, seg, cfg, out))
    table = pd.read_csv(out / "summary.csv")
    assert list(table["slide"]) == ["case.1", "case.2"]
    assert set(table["status"]) == {"done"} and table["run_key"].str.len().eq(12).all()
    for row in table.itertuples():
        features = json.loads((out / f"{row.slide}.geojson").read_text())["features"]
        assert row.objects == len(features) > 0
        area_um2 = sum(f["properties"]["measurements"]["wsi-sat area µm^2"] for f in features)
        assert abs(row.target_mm2 - area_um2 / 1e6) < 1e-4


def test_every_phase_reports_progress_in_a_batch_log(slide, fake_engine, tmp_path, caplog):
    """Reference, survey, tiles and finalize each log where they stand (a SLURM log is not a
    terminal: no bar, plain lines)."""
    import logging

    caplog.set_level(logging.INFO, logger="wsi_sat.progress")
    _run(fake_engine, slide, tmp_path / "o")
    lines = [r.getMessage() for r in caplog.records if r.name == "wsi_sat.progress"]
    for phase in ("reference views: ", "case.1.tif survey: ", "case.1 tiles: ",
                  "case.1 finalize: "):
        assert any(line.startswith(phase) for line in lines), (phase, lines)
    assert any(line.startswith("case.1 tiles:") and "done in" in line for line in lines)


def test_temporary_files_of_a_killed_run_are_removed_by_the_next(slide, fake_engine, tmp_path):
    """A SIGKILL between an atomic write's temporary file and its rename leaves a hidden
    `.part` file; the next run of that slide removes it (it holds the slide's lock)."""
    out = tmp_path / "o"
    _run(fake_engine, slide, out, max_batches=1)
    leftovers = [out / ".case.1.geojson.k1ll3d.part", out / "case.1.shards" / ".x.json.ab.part"]
    for path in leftovers:
        path.write_text("{")
    other = out / ".case.2.geojson.zz.part"  # another slide's: not this run's to remove
    other.write_text("{")
    _run(fake_engine, slide, out, resume=True)
    assert not any(p.exists() for p in leftovers) and other.exists()
