"""`wsi-sat check OUT`: is a results folder complete, and is every output still what the run that
recorded it wrote? (Run keys: signature.py; the manifest: writers/manifest.py; the checks that
need no hash: pipeline/consistency.py.)

A slide passes when its run.json is intact (its own hash), names a manifest that is intact, every
file the manifest lists is there with its size and sha256 (the label store's every chunk too, and
no chunk the manifest does not list), the store carries run.json's run key, the GeoJSON, the
object table, the store's labels and the polygons agree with one another and with run.json's
object count, each pyramid level is the level below subsampled, and no work of an unfinished
run (a `.partial` store, shards, a lock, temporary `.part` files) is left beside them. The
folder's summary.csv must list every finished slide with its run key and object count.
`quick` checks presence and sizes only (no file is read whole).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wsi_sat.pipeline.consistency import labels_problem, polygons_problem, pyramid_problem
from wsi_sat.pipeline.plan import OutputPaths
from wsi_sat.pipeline.resume import store_key
from wsi_sat.signature import file_sha256
from wsi_sat.writers.manifest import differences, record_intact
from wsi_sat.writers.tables import slide_row

SUMMARY = "summary.csv"
_RERUN = "rerun the slide (its outputs cannot be trusted)"


@dataclass(frozen=True)
class SlideCheck:
    stem: str
    problems: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _stems(out_dir: Path) -> list[str]:
    """Every slide with an output or unfinished work in the folder."""
    stems = set()
    for p in out_dir.iterdir():
        for suffix in (".run.json", ".ome.zarr.partial", ".ome.zarr", ".geojson", ".shards",
                       ".lock", ".manifest.json"):
            if p.name.endswith(suffix) and not p.name.endswith(".tissue.geojson"):
                stems.add(p.name[: -len(suffix)])
                break
    return sorted(stems)


def _read_record(paths: OutputPaths) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(paths.run_json.read_text())
    except FileNotFoundError:
        return None, "no run.json: the run did not finish (rerun with --resume)"
    except (OSError, ValueError):
        return None, f"run.json is unreadable; {_RERUN}"
    if not isinstance(record, dict) or not record_intact(record):
        return None, f"run.json was edited or damaged (its hash does not match); {_RERUN}"
    if not isinstance(record.get("manifest"), dict):
        return None, ("run.json names no manifest (written by an older wsi-sat); rerun the "
                      "slide to check it")
    return record, None


def _manifest_problems(paths: OutputPaths, record: dict[str, Any], quick: bool) -> list[str]:
    try:
        if not quick and file_sha256(paths.manifest) != record["manifest"].get("sha256"):
            return [f"'{paths.manifest.name}' was edited or replaced; {_RERUN}"]
        manifest = json.loads(paths.manifest.read_text())
        files, chunks, extra = differences(paths.out_dir, manifest, paths.zarr, quick)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"'{paths.manifest.name}' is missing or unreadable; {_RERUN}"]
    problems = [f"'{name}' is {verdict} since the run wrote it; {_RERUN}"
                for name, verdict in files.items()]
    if chunks:
        first = sorted(chunks)[0]
        problems.append(f"label store: {len(chunks)} file(s) missing or changed (first "
                        f"'{paths.zarr.name}/{first}', {chunks[first]}); {_RERUN}")
    if extra:
        problems.append(f"label store: {len(extra)} file(s) the run did not write (first "
                        f"'{paths.zarr.name}/{extra[0]}'); {_RERUN}")
    if store_key(paths.zarr) != record.get("run_key"):
        problems.append("the label store is missing or was written by another run")
    return problems


def _guarded(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - damaged data may fail in any reader
        return f"an output is unreadable ({exc.__class__.__name__}: {str(exc)[:120]}); {_RERUN}"


def _object_table(paths: OutputPaths) -> pd.DataFrame:
    try:
        return pd.read_csv(paths.objects_csv)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({"label": []})


def _consistency_problems(paths: OutputPaths, record: dict[str, Any]) -> list[str]:
    """The cross-checks that need no hash."""
    n = record.get("objects")
    levels = int((record.get("zarr") or {}).get("levels", 1))
    instances = record.get("object_type") == "detection"
    try:
        features = json.loads(paths.geojson.read_text())["features"]
        table = _object_table(paths)
    except (OSError, ValueError, KeyError, TypeError):
        return [f"the GeoJSON or the object table is missing or unreadable; {_RERUN}"]
    problems = []
    if len(features) != n:
        problems.append(f"the GeoJSON holds {len(features)} objects, run.json {n}")
    if len(table) != n:
        problems.append(f"the object table holds {len(table)} rows, run.json {n}")
    labels = list(table["label"]) if "label" in table else []
    for check in (lambda: pyramid_problem(paths.zarr, levels),
                  lambda: labels_problem(paths.zarr, labels, instances),
                  lambda: polygons_problem(paths.zarr, levels, features, record)):
        problem = _guarded(check)
        if problem:
            problems.append(problem)
    return problems


def check_slide(paths: OutputPaths, quick: bool = False) -> SlideCheck:
    record, problem = _read_record(paths)
    problems = [problem] if problem else []
    if record is not None:
        problems += _manifest_problems(paths, record, quick)
        if not quick:
            problems += _consistency_problems(paths, record)
    for leftover in (paths.partial, paths.shards, paths.lock, *paths.leftover_parts()):
        if leftover.exists():
            problems.append(f"'{leftover.name}' is left from an unfinished or running run")
    return SlideCheck(paths.stem, problems, record if not problems else None)


def summary_problems(out_dir: Path, checks: list[SlideCheck]) -> list[str]:
    """summary.csv lists every finished slide with its run key and object count."""
    finished = {c.stem: c.record for c in checks if c.record is not None}
    if not finished:
        return []
    try:
        rows = pd.read_csv(out_dir / SUMMARY, dtype={"slide": str, "run_key": str})
        by_slide = {str(r["slide"]): r for _, r in rows.iterrows()}
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return [f"{SUMMARY} is missing or unreadable; run the same command with --resume to "
                "write it again"]
    for stem, record in finished.items():
        if not _row_matches(by_slide.get(stem), slide_row(stem, record, "done")):
            return [f"{SUMMARY} does not match '{stem}'s run.json; run the same command with "
                    "--resume to write it again"]
    return []


def _row_matches(row: Any, expected: dict[str, Any]) -> bool:
    """A summary.csv row says what run.json does (numbers as written, to 4 decimals)."""
    if row is None or not str(row.get("status", "")).startswith(("done", "skipped")):
        return False
    for key, value in expected.items():
        if key == "status":
            continue
        got = row.get(key)
        if isinstance(value, (int, float)):
            if pd.isna(got) or abs(float(got) - value) > 1e-4 * max(1.0, abs(value)):
                return False
        elif ("" if pd.isna(got) else str(got)) != str(value):
            return False
    return True


def check_output(out_dir: Path, quick: bool = False) -> list[SlideCheck]:
    """One check per slide found in `out_dir`, and one of its summary.csv (stem 'summary.csv')
    where a problem is found there."""
    out_dir = Path(out_dir)
    checks = [check_slide(OutputPaths(stem, out_dir), quick) for stem in _stems(out_dir)]
    summary = summary_problems(out_dir, checks)
    return checks + ([SlideCheck(SUMMARY, summary)] if summary else [])
