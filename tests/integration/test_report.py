"""The cohort report (report.html) in a real browser: headless Chromium opens it from the
folder, as a user opening a results folder copied back from a cluster would. It must render
every slide, load every overview, and log nothing to the console; a missing overview is shown
as missing (the control that this check can fail)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reliability.test_runs import _setup, slide  # noqa: F401 - the fixture
from wsi_sat import api


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")


def _open(page: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """The page's DOM after it loaded, and every console line Chromium logged."""
    base = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=10000", "--window-size=1400,1600"]
    run = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", page.as_uri()],
                       capture_output=True, timeout=120)
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def test_console_errors_are_seen(tmp_path):
    """The control: a page with a script error is caught by `_open`."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefined_function();</script></body></html>")
    _, console = _open(page)
    assert console and "undefined_function" in console[0]


def test_the_cohort_report_renders_with_every_overview(slide, fake_engine, tmp_path):  # noqa: F811
    other = tmp_path / "case.2.tif"
    shutil.copy(slide, other)
    out = tmp_path / "o"
    seg, ref, cfg = _setup(fake_engine)
    list(api.run_slides([slide, other], ref, seg, cfg, out))
    report = out / "report.html"
    dom, console = _open(report, tmp_path / "report.png")
    assert console == [], console
    assert 'data-overviews="2/2"' in dom, re.findall(r"<body[^>]*>", dom)
    assert dom.count('class="card"') == 2 and dom.count("<rect") == 2
    assert "case.1" in dom and "case.2" in dom and "<p class=\"missing\">" not in dom
    # copied elsewhere (a folder brought back from a cluster) it still finds its images
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    (moved / "case.2.overview.png").unlink()  # one not copied back
    dom, console = _open(moved / "report.html")
    assert console == [] and 'data-overviews="1/2"' in dom
    assert "<p class=\"missing\">overview not found: case.2.overview.png</p>" in dom


def test_slide_names_and_warnings_are_text_not_markup():
    from wsi_sat.writers.report import report_html

    evil = '<img src=x onerror="alert(1)">&'
    page = report_html([{"slide": evil, "status": "done", "objects": 3,
                         "warnings": "<script>alert(2)</script>"}], "t")
    assert evil not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert 'src="%3Cimg%20src%3Dx' in page  # its file names, URL-quoted
