"""Faults with the real model (MobileSAM), through the real command line in a subprocess:
SIGKILL in every phase, then `--resume`, gives the outputs of an uninterrupted run byte for byte;
Ctrl-C exits 130 saying how to resume; a Dask worker killed mid-run is replaced and its batches
rerun elsewhere, with the same result (both workers at once too, and one killed while the cluster
starts); workers that freeze end the run in bounded time, resumable.

The kill is a real SIGKILL the process sends itself when it reaches the phase (a wrapper
around one function of that phase: `module:attribute`, after `after` calls), so it lands at the
same point on every machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blobs_image
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff
from wsi_sat.writers.ome_zarr import read_level

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEM = "case.1"
SETTINGS = ["wsi.tile_px=256", "wsi.overlap_px=32", "wsi.batch_tiles=2", "wsi.pyramid_min_px=64",
            "runtime.device=cpu"]

KILLER = """
import importlib, os, signal, sys
target, after, signame = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module, attr = target.split(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
# Ctrl-C as in a terminal: a background job of a non-interactive shell (`cmd &`, as CI may run
# the tests) inherits SIGINT ignored, and Python then leaves it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
def hook(*args, **kwargs):
    calls[0] += 1
    if calls[0] == after + 1:  # once
        os.kill(os.getpid(), getattr(signal, signame))
    return original(*args, **kwargs)
setattr(owner, name, hook)
sys.argv = ["wsi-sat", *sys.argv[4:]]
from wsi_sat.cli import app
app()
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kill")
    pairs = [blobs_image(40 + i, size=(200, 240), n=4) for i in range(6)]
    image, _ = mosaic(pairs, cols=3, cell_hw=(200, 240), gap_px=40)
    write_pyramidal_tiff(d / f"{STEM}.tif", image, 0.5, tile_px=128, min_px=256)
    from PIL import Image

    ref, mask = blobs_image(0)
    Image.fromarray(ref).save(d / "ref.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(d / "ref_mask.png")
    return d


def _argv(files: Path, out: Path, *extra: str) -> list[str]:
    argv = ["run", str(files / f"{STEM}.tif"), "--reference", str(files / "ref.png"),
            "--reference-mask", str(files / "ref_mask.png"), "--out", str(out)]
    for s in SETTINGS:
        argv += ["--set", s]
    return argv + list(extra)


def _cli(argv: list[str], killer: tuple[str, int] | None = None, timeout: int = 600,
         signame: str = "SIGKILL") -> subprocess.CompletedProcess:
    """The command line in a subprocess; with `killer` (`module:attribute`, calls) the process
    sends itself `signame` when that function is called once more than `calls` times."""
    cmd = ([sys.executable, "-c", KILLER, killer[0], str(killer[1]), signame] if killer else
           [sys.executable, "-m", "wsi_sat.cli"]) + argv
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _snapshot(out: Path) -> dict[str, bytes | np.ndarray]:
    """Everything a user reads: every label level, the GeoJSONs, the objects table."""
    shot: dict[str, bytes | np.ndarray] = {}
    store = out / f"{STEM}.ome.zarr"
    levels = json.loads((out / f"{STEM}.run.json").read_text())["zarr"]["levels"]
    for level in range(levels):
        shot[f"level{level}"] = read_level(store, level)
    for suffix in (".geojson", ".tissue.geojson", ".objects.csv"):
        shot[suffix] = (out / f"{STEM}{suffix}").read_bytes()
    return shot


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def clean(files, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("clean") / "o"
    proc = _cli(_argv(files, out))
    assert proc.returncode == 0, proc.stderr
    shot = _snapshot(out)
    assert shot["level0"].any(), "the clean run found nothing: the kills would prove little"
    return shot


PHASES = [
    ("reference", "wsi_sat.api:prepare_slide_reference", 0),
    ("survey", "wsi_sat.pipeline.run:survey_slide", 0),
    ("tiles", "wsi_sat.pipeline.batch:write_atomic", 2),
    ("merge", "wsi_sat.pipeline.finalize:merge_regions", 0),
    ("pyramid", "zarr:Group.create_array", 1),
    ("geojson", "wsi_sat.pipeline.finalize:write_geojson", 0),
    ("tables", "wsi_sat.pipeline.finalize:write_objects", 0),
    ("run.json", "wsi_sat.pipeline.finalize:write_run_json", 0),
]


@pytest.mark.parametrize("phase, target, after", PHASES, ids=[p[0] for p in PHASES])
def test_sigkill_in_every_phase_then_resume_gives_the_same_outputs(files, clean, tmp_path,
                                                                   phase, target, after):
    out = tmp_path / "o"
    killed = _cli(_argv(files, out), killer=(target, after))
    assert killed.returncode == -signal.SIGKILL, (phase, killed.returncode, killed.stderr)
    assert not (out / f"{STEM}.run.json").exists(), "a killed run looks complete"
    resumed = _cli(_argv(files, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    _same(clean, _snapshot(out))
    assert not (out / f"{STEM}.shards").exists() and not (out / f"{STEM}.lock").exists()


def _wait_for_shard(out: Path, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    t0 = time.monotonic()
    while not list((out / f"{STEM}.shards").glob("*.json")):
        assert proc.poll() is None, "the run ended before its first shard"
        assert time.monotonic() - t0 < timeout_s
        time.sleep(0.05)


def test_ctrl_c_exits_130_with_where_to_resume(files, clean, tmp_path):
    # a real SIGINT, sent by the process itself as its second batch is written (with the
    # survey's encodings reused, the rest of this small slide takes ~2 s after the first shard,
    # so a signal from outside would depend on timing)
    out = tmp_path / "o"
    interrupted = _cli(_argv(files, out), killer=("wsi_sat.pipeline.batch:write_atomic", 1),
                       signame="SIGINT")
    err = interrupted.stderr
    assert interrupted.returncode == 130, err
    assert not (out / f"{STEM}.run.json").exists(), "an interrupted run looks complete"
    assert "--resume" in err.strip().splitlines()[-1] and "Traceback" not in err
    resumed = _cli(_argv(files, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _same(clean, _snapshot(out))


def _worker_processes(proc: subprocess.Popen) -> list:
    """The Dask worker processes of a run (the nannies start them with multiprocessing's
    spawn)."""
    import psutil

    def is_worker(child: psutil.Process) -> bool:
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            return False
        return "spawn_main" in line and "resource_tracker" not in line

    return [c for c in psutil.Process(proc.pid).children(recursive=True) if is_worker(c)]


def _dask_run(files: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wsi_sat.cli", *_argv(files, out, *extra),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("which", ["one", "both"])
def test_dask_workers_killed_mid_run_are_replaced_with_the_same_result(files, clean, tmp_path,
                                                                       which):
    """A real SIGKILL of one worker, or of both at once (the reference each held dies with
    them: the run sends it again and resubmits the lost batches)."""
    out = tmp_path / "o"
    proc = _dask_run(files, out)
    _wait_for_shard(out, proc)
    workers = _worker_processes(proc)
    assert workers
    for worker in workers[: 1 if which == "one" else None]:
        worker.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    _same(clean, _snapshot(out))
    # stderr is a pipe here, as in a SLURM log: progress comes as plain lines
    assert "case.1 tiles: " in err and "tiles done in" in err


def test_a_worker_killed_while_the_cluster_starts_is_replaced(files, clean, tmp_path):
    out = tmp_path / "o"
    proc = _dask_run(files, out)
    t0 = time.monotonic()
    while not (workers := _worker_processes(proc)) and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    assert workers, "no worker started"
    workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    _same(clean, _snapshot(out))


def test_frozen_workers_end_the_run_in_bounded_time_and_it_resumes(files, clean, tmp_path):
    """Workers that stop answering without dying (SIGSTOP: a hung node or file system): the
    run stops with exit 2 and one line once no batch has finished for the stall timeout; the
    same command with --resume finishes it."""
    out = tmp_path / "o"
    proc = _dask_run(files, out, "--set", "runtime.stall_timeout_s=10")
    _wait_for_shard(out, proc)
    workers = _worker_processes(proc)
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        for worker in workers:  # never leave stopped processes behind
            try:
                worker.send_signal(signal.SIGKILL)
            except Exception:  # noqa: BLE001 - already gone
                pass
    assert proc.returncode == 2, err
    assert time.monotonic() - t0 < 120
    assert "no batch finished in 10s" in err and "--resume" in err and "Traceback" not in err
    resumed = _cli(_argv(files, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _same(clean, _snapshot(out))
