"""Progress in batch logs: every phase says where it stands, with counts and an ETA, at a steady
pace and never a flood; in a terminal a bar instead."""

from __future__ import annotations

import logging

from wsi_sat.runtime.progress import Progress


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsi_sat.progress"]


def test_a_batch_log_gets_a_line_per_tenth_and_never_a_flood(caplog):
    caplog.set_level(logging.INFO, logger="wsi_sat.progress")
    with Progress("s tiles", 10_000, "tile", every_s=3600, terminal=False) as p:
        for _ in range(10_000):
            p.update()
    lines = _lines(caplog)
    assert lines[0] == "s tiles: 10000 tiles to do"
    assert lines[-1].startswith("s tiles: 10000 tiles done in")
    assert len(lines) == 11  # the start, 10 %, 20 %, ... 90 %, the end
    assert "(50 %)" in lines[5] and "tile/s" in lines[5] and "left" in lines[5]


def test_a_slow_phase_logs_every_so_many_seconds(caplog, monkeypatch):
    import wsi_sat.runtime.progress as progress

    caplog.set_level(logging.INFO, logger="wsi_sat.progress")
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    with Progress("s tiles", 1000, "tile", every_s=30, terminal=False) as p:
        for _ in range(20):  # 2 % of the work, one item every 10 s
            now[0] += 10
            p.update()
    lines = _lines(caplog)
    assert len(lines) == 1 + 6 + 1  # the start, every 30 s of 200 s, the end
    assert "about" in lines[1] and "left" in lines[1]


def test_a_resume_counts_what_was_done_before(caplog):
    caplog.set_level(logging.INFO, logger="wsi_sat.progress")
    with Progress("s tiles", 100, "tile", initial=40, every_s=3600, terminal=False) as p:
        p.update(60)
    lines = _lines(caplog)
    assert lines[0] == "s tiles: 60 tiles to do (40 done before)"
    assert lines[-1].startswith("s tiles: 60 tiles done in")


def test_quiet_runs_show_nothing(caplog):
    caplog.set_level(logging.WARNING, logger="wsi_sat.progress")
    with Progress("s tiles", 10, "tile", terminal=True) as p:
        p.update(10)
    assert _lines(caplog) == []
