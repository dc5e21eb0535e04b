"""Tables a pathologist works with, written with pandas: one row per object
(`<stem>.objects.csv`, and `<stem>.objects.parquet` where pyarrow is installed) and one row per
slide of a run (`summary.csv`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from wsi_sat.geometry import Scale
from wsi_sat.stitch.measures import (
    PIXEL_COLUMNS,
    SHAPE_COLUMNS,
    pixel_measures,
    shape_measures,
    size_flags,
)
from wsi_sat.stitch.polygons import TileObject
from wsi_sat.writers.atomic import write_atomic

OBJECT_COLUMNS = ["id", "class", "label", "centroid_x_px", "centroid_y_px", *SHAPE_COLUMNS,
                  "score", *PIXEL_COLUMNS, "size_flag", "bbox_x0_px", "bbox_y0_px",
                  "bbox_x1_px", "bbox_y1_px"]


def objects_table(objs: list[TileObject], class_name: str, level0: Scale,
                  instances: bool = False, expected_um2: tuple[float, float] | None = None,
                  flag_factor: float = 10.0) -> pd.DataFrame:
    """One row per object, in the GeoJSON's order (ids are the feature order); coordinates in
    level-0 slide pixels, measured at `level0`'s pixel size; `label` is the object's value in
    the label store (1 in region mode, one row per label in instances mode). Instances also get
    their pixels' mean colour and stains, and `size_flag` where their area is more than
    `flag_factor` x outside the reference objects' (`expected_um2`)."""
    geoms = [o.polygon for o in objs]
    arr = np.asarray(geoms, dtype=object)
    centroids = shapely.get_coordinates(shapely.centroid(arr)) if geoms else np.zeros((0, 2))
    bounds = shapely.bounds(arr) if geoms else np.zeros((0, 4))
    shape = shape_measures(geoms, level0)
    table = pd.DataFrame({
        "id": np.arange(len(objs)), "class": class_name,
        "label": [o.label if instances else 1 for o in objs],
        "centroid_x_px": centroids[:, 0], "centroid_y_px": centroids[:, 1], **shape,
        "score": [o.score for o in objs],
        **pixel_measures([o.sums for o in objs], [o.area_px for o in objs]),
        "size_flag": size_flags(shape["area_um2"], expected_um2 if instances else None,
                                flag_factor),
        "bbox_x0_px": bounds[:, 0], "bbox_y0_px": bounds[:, 1], "bbox_x1_px": bounds[:, 2],
        "bbox_y1_px": bounds[:, 3]})
    return table[OBJECT_COLUMNS]


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
    inside_mm2 = record.get("target_in_tissue_mm2", min(target_mm2, tissue_mm2))
    objects = record.get("objects", 0)
    return {"slide": stem, "status": status, "run_key": str(record.get("run_key", ""))[:12],
            "object_type": record.get("object_type", ""),
            "tissue_mm2": tissue_mm2, "objects": objects,
            "target_mm2": target_mm2,
            "target_fraction_of_tissue": inside_mm2 / tissue_mm2 if tissue_mm2 else 0.0,
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
    """summary.csv, and report.html beside it (the same rows as a page to look at)."""
    from wsi_sat.writers.report import write_report

    write_atomic(path, lambda p: pd.DataFrame(rows).to_csv(p, index=False,
                                                          float_format="%.4f"))
    write_report(Path(path).with_name("report.html"), rows)


def update_summary(out_dir: Path, stem: str, record: dict[str, Any] | None, status: str) -> None:
    """Rewrite `out_dir/summary.csv` with this slide's row (`status`: "unfinished" while it
    runs, so an interrupted rerun never leaves an old "done") and every other finished slide's."""
    write_summary(Path(out_dir) / "summary.csv",
                  folder_rows(Path(out_dir), [slide_row(stem, record or {}, status)]))
