"""Undefined names and unused imports are bugs waiting for the one code path a test misses (a
NameError in `run`'s cohort summary once reached CI): pyflakes' rules over the whole tree."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_no_undefined_names_or_unused_imports():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    done = subprocess.run([ruff, "check", "--no-cache", "--select", "F", "--output-format",
                           "concise", "wsi_sat", "tests", "benchmarks", "examples", "scripts"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
