"""`wsi-sat check OUT`: is a results folder complete, and does every output belong to the run
its run.json records? (Run keys: pipeline/signature.py.)

A slide is complete when its run.json, label store (every level run.json names), GeoJSON and
object table are in place and agree: the store carries run.json's key, the GeoJSON and the table
hold run.json's object count, and no work of an unfinished run (a `.partial` store, shards, a
lock) is left beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wsi_sat.pipeline.plan import OutputPaths
from wsi_sat.pipeline.resume import store_key


@dataclass(frozen=True)
class SlideCheck:
    stem: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _stems(out_dir: Path) -> list[str]:
    """Every slide with an output or unfinished work in the folder."""
    stems = set()
    for p in out_dir.iterdir():
        for suffix in (".run.json", ".ome.zarr.partial", ".ome.zarr", ".geojson", ".shards",
                       ".lock"):
            if p.name.endswith(suffix) and not p.name.endswith(".tissue.geojson"):
                stems.add(p.name[: -len(suffix)])
                break
    return sorted(stems)


def check_slide(paths: OutputPaths) -> SlideCheck:
    problems: list[str] = []
    try:
        record = json.loads(paths.run_json.read_text())
    except FileNotFoundError:
        return SlideCheck(paths.stem, ["no run.json: the run did not finish (rerun with "
                                       "--resume)"])
    except (OSError, ValueError):
        return SlideCheck(paths.stem, ["run.json is unreadable"])
    key, n = record.get("run_key"), record.get("objects")
    if store_key(paths.zarr) != key:
        problems.append("the label store is missing or was written by another run")
    else:
        levels = int((record.get("zarr") or {}).get("levels", 1))
        missing = [str(i) for i in range(levels) if not (paths.zarr / str(i)).is_dir()]
        if missing:
            problems.append(f"label store levels missing: {', '.join(missing)}")
    try:
        features = json.loads(paths.geojson.read_text()).get("features", [])
        if len(features) != n:
            problems.append(f"the GeoJSON holds {len(features)} objects, run.json {n}")
    except (OSError, ValueError, AttributeError):
        problems.append("the GeoJSON is missing or unreadable")
    try:
        rows = len(pd.read_csv(paths.objects_csv))
        if rows != n:
            problems.append(f"the object table holds {rows} rows, run.json {n}")
    except pd.errors.EmptyDataError:
        if n:
            problems.append(f"the object table is empty, run.json {n}")
    except (OSError, ValueError):
        problems.append("the object table is missing or unreadable")
    for leftover in (paths.partial, paths.shards, paths.lock):
        if leftover.exists():
            problems.append(f"'{leftover.name}' is left from an unfinished or running run")
    return SlideCheck(paths.stem, problems)


def check_output(out_dir: Path) -> list[SlideCheck]:
    """One check per slide found in `out_dir`."""
    return [check_slide(OutputPaths(stem, out_dir)) for stem in _stems(Path(out_dir))]
