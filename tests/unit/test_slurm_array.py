"""examples/slurm_array.sh: the prepare job and the array it submits, run through a stand-in
`sbatch` that executes each job at once, with a stand-in `wsi-sat` that parses every command
line with the real CLI (so a renamed or missing flag fails here, not on a cluster)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "slurm_array.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None,
                                reason="needs bash and awk")

# `sbatch`: records its options, runs the job script now (each array index in turn).
FAKE_SBATCH = r"""#!/usr/bin/env bash
echo "$*" >> "$LOG_DIR/sbatch.log"
array=""; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --array=*) array=${1#--array=}; shift ;;
    --*) shift ;;
    *) args=("$@"); break ;;
  esac
done
if [[ -n $array ]]; then
  range=${array%%%*}; for ((i=${range%-*}; i<=${range#*-}; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash "${args[@]}" || exit 1
  done
  echo "200"
else
  bash "${args[@]}" || exit 1
  echo "100;cluster"
fi
"""

# `wsi-sat`: parses the command line with the real click commands, then records it.
FAKE_WSI_SAT = """
import json, os, sys
import click
from wsi_sat.cli import app
argv = sys.argv[1:]
ctx = app.make_context("wsi-sat", list(argv))
cmd, rest = app, ctx.protected_args + ctx.args
while isinstance(cmd, click.Group):
    name, cmd, rest = cmd.resolve_command(ctx, rest)
    ctx = cmd.make_context(name, rest, parent=ctx)
    rest = getattr(ctx, "protected_args", []) + ctx.args
with open(os.path.join(os.environ["LOG_DIR"], "wsi-sat.log"), "a") as f:
    f.write(json.dumps({"command": ctx.command_path, "params": ctx.params}, default=str) + "\\n")
"""


def _submit(tmp_path: Path, slides_text: str, *args: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    (tmp_path / "fake_wsi_sat.py").write_text(FAKE_WSI_SAT)
    (tmp_path / "slides.txt").write_text(slides_text)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "LOG_DIR": str(tmp_path), "WSI_SAT": f"{sys.executable} {tmp_path / 'fake_wsi_sat.py'}",
           "SBATCH_ARGS": "--partition=gpu --gres=gpu:1", "MAX_PARALLEL": "7"}
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "slides.txt"),
                           str(tmp_path / "out"), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_prepare_then_one_task_per_slide(tmp_path: Path) -> None:
    for name in ("a.1.svs", "b c.svs"):
        (tmp_path / name).write_bytes(b"x")
    done = _submit(tmp_path, f"{tmp_path / 'a.1.svs'}\n\n  {tmp_path / 'b c.svs'}  \n",
                   "--set", "wsi.tile_px=512", "--", "--reference", "ref.png",
                   "--reference-mask", "ref_mask.png", "--reference-mpp", "0.5")
    assert done.returncode == 0, done.stderr
    sbatch = (tmp_path / "sbatch.log").read_text().splitlines()
    assert "--partition=gpu --gres=gpu:1" in sbatch[0] and "--array" not in sbatch[0]
    assert "--array=1-2%7" in sbatch[1] and "--dependency=afterok:100 " in sbatch[1]
    calls = [json.loads(line) for line in (tmp_path / "wsi-sat.log").read_text().splitlines()]
    cache = str((tmp_path / "out" / "reference.wsisat").resolve())
    prepare, *tasks = calls
    assert prepare["command"] == "wsi-sat reference prepare"
    assert prepare["params"]["out_file"] == cache
    assert prepare["params"]["references"] == ["ref.png"]
    assert prepare["params"]["overrides"] == ["wsi.tile_px=512"]
    assert [t["command"] for t in tasks] == ["wsi-sat run"] * 2
    assert [t["params"]["slides"] for t in tasks] == [[str(tmp_path / "a.1.svs")],
                                                      [str(tmp_path / "b c.svs")]]
    for task in tasks:  # the same config as the prepare job, the cache, resumable
        assert task["params"]["reference_cache"] == cache
        assert task["params"]["resume"] is True
        assert task["params"]["overrides"] == ["wsi.tile_px=512"]
        assert task["params"]["references"] == []


@pytest.mark.parametrize(("slides", "args", "message"), [
    ("{tmp}/missing.svs\n", ["--", "--reference", "r.png"], "missing.svs' (in"),
    ("\n\n", ["--", "--reference", "r.png"], "lists no slides"),
    ("{tmp}/a.svs\n", ["--set", "x=1"], "no reference options after '--'"),
])
def test_bad_submission_refused_before_anything_is_queued(tmp_path: Path, slides: str,
                                                         args: list[str], message: str) -> None:
    (tmp_path / "a.svs").write_bytes(b"x")
    done = _submit(tmp_path, slides.format(tmp=tmp_path), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "sbatch.log").exists()


def test_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
