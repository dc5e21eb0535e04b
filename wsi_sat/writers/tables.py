"""Tables a pathologist works with, written with pandas: one row per object
(`<stem>.objects.csv`, and `<stem>.objects.parquet` where pyarrow is installed) and one row per
slide of a run (`summary.csv`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd

from wsi_sat.geometry import Scale
from wsi_sat.stitch.polygons import TileObject
from wsi_sat.writers.atomic import write_atomic

OBJECT_COLUMNS = ["id", "class", "label", "centroid_x_px", "centroid_y_px", "area_um2",
                  "perimeter_um", "score", "bbox_x0_px", "bbox_y0_px", "bbox_x1_px", "bbox_y1_px"]


def objects_table(objs: list[TileObject], class_name: str, level0: Scale,
                  instances: bool = False) -> pd.DataFrame:
    """One row per object, in the GeoJSON's order (ids are the feature order); coordinates in
    level-0 slide pixels, measured at `level0`'s pixel size; `label` is the object's value in
    the label store (1 in region mode)."""
    rows = []
    for i, obj in enumerate(objs):
        c, (x0, y0, x1, y1) = obj.polygon.centroid, obj.polygon.bounds
        rows.append([i, class_name, obj.label if instances else 1, c.x, c.y,
                     level0.area_um2(obj.polygon.area), level0.um(obj.polygon.length), obj.score,
                     x0, y0, x1, y1])
    return pd.DataFrame(rows, columns=OBJECT_COLUMNS)


def write_objects(csv_path: Path, table: pd.DataFrame) -> list[Path]:
    """The CSV, and the Parquet beside it where pyarrow is installed; returns what was written."""
    write_atomic(csv_path, lambda p: table.to_csv(p, index=False, float_format="%.3f"))
    written = [Path(csv_path)]
    if importlib.util.find_spec("pyarrow") is not None:
        parquet = Path(csv_path).with_suffix(".parquet")
        write_atomic(parquet, lambda p: table.to_parquet(p, index=False))
        written.append(parquet)
    return written


def slide_row(stem: str, record: dict[str, Any], status: str) -> dict[str, Any]:
    """summary.csv's row of one slide from its run.json."""
    tissue_mm2 = record.get("tissue", {}).get("area_mm2", 0.0)
    target_mm2 = record.get("target_area_mm2", 0.0)
    objects = record.get("objects", 0)
    return {"slide": stem, "status": status, "run_key": str(record.get("run_key", ""))[:12],
            "tissue_mm2": tissue_mm2, "objects": objects,
            "target_mm2": target_mm2,
            "target_fraction_of_tissue": target_mm2 / tissue_mm2 if tissue_mm2 else 0.0,
            "objects_per_mm2_tissue": objects / tissue_mm2 if tissue_mm2 else 0.0,
            "mean_score": record.get("mean_score", 0.0),
            "seconds": record.get("timings_s", {}).get("total", 0.0),
            "warnings": " | ".join(record.get("warnings", []))}


def folder_rows(out_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (this run's slides) and a "done" row for every other slide whose run.json is in
    `out_dir` (slides of SLURM array tasks or earlier runs into the same folder), by name."""
    import json

    mine = {r["slide"] for r in rows}
    out = list(rows)
    for run_json in sorted(Path(out_dir).glob("*.run.json")):
        stem = run_json.name[: -len(".run.json")]
        if stem in mine:
            continue
        try:
            record = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue  # being replaced by another task this moment
        out.append(slide_row(stem, record, "done"))
    return sorted(out, key=lambda r: r["slide"])


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, lambda p: pd.DataFrame(rows).to_csv(p, index=False,
                                                          float_format="%.4f"))
