"""The container recipes install wsi-sat from this repository and run `wsi-sat demo`.

No container tool exists on the machines these tests run on, so the test runs what the
containers run: it copies exactly the files the Dockerfile and the Apptainer definition copy
into an empty folder, runs their install step (scripts/install.sh, building a wheel of the
checkout, not an editable install) into a fresh environment, then their default command (the
demo) and the Apptainer %test (`models verify`). A file the recipes forget to copy, package data
missing from the wheel, or an install step that fails here fails there too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "containers" / "Dockerfile"
APPTAINER = REPO / "containers" / "wsi-sat.def"
INSTALL = "sh scripts/install.sh /opt/wsi-sat parquet"


def _docker_copies() -> set[str]:
    sources = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *srcs, _dest = line.split()[1:]
            sources |= set(srcs)
    return sources


def _apptainer_section(name: str) -> list[str]:
    text = APPTAINER.read_text()
    match = re.search(rf"^%{name}\n(.*?)(?=^%|\Z)", text, re.S | re.M)
    assert match, f"no %{name} in {APPTAINER.name}"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_both_recipes_copy_the_same_files_and_install_the_same_way():
    docker = _docker_copies()
    apptainer = {line.split()[0] for line in _apptainer_section("files")}
    assert docker == apptainer
    for source in docker:
        assert (REPO / source).exists(), source
    assert INSTALL in DOCKERFILE.read_text()
    assert any(line.endswith("scripts/install.sh /opt/wsi-sat parquet")
               for line in _apptainer_section("post"))
    assert 'CMD ["demo"' in DOCKERFILE.read_text()
    assert any("wsi-sat demo" in line for line in _apptainer_section("runscript"))


def test_the_containers_install_step_and_command_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for source in _docker_copies():
        path = REPO / source
        if path.is_dir():
            shutil.copytree(path, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / source)
    venv = tmp_path / "opt-wsi-sat"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(["sh", "scripts/install.sh", str(venv), "parquet"], cwd=src,
                             env=env, capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    assert "wsi-sat, version" in install.stdout
    work = tmp_path / "data"
    work.mkdir()
    demo = subprocess.run([str(venv / "bin" / "wsi-sat"), "demo", "--out", "demo_out"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "mean Dice" in demo.stdout + demo.stderr
    assert list((work / "demo_out" / "results").glob("*.geojson"))
    verify = subprocess.run([str(venv / "bin" / "wsi-sat"), "models", "verify"], cwd=work,
                            env=env, capture_output=True, text=True, timeout=600)
    assert verify.returncode == 0, verify.stdout + verify.stderr
