"""The whole-slide pipeline by stage: plan.py (tissue, grid, batches) → coarse.py (optional
coarse-to-fine selection) → survey.py (the slide's tiles for its decision) → batch.py (one batch:
read, segment, write chunks and a shard) → finalize.py (merge, pyramid, GeoJSON, overview,
run.json); run.py composes them. It composes and owns no method logic (`wsi_sat.sat`)."""

from wsi_sat.pipeline.finalize import SlideSummary
from wsi_sat.pipeline.plan import RunOptions
from wsi_sat.pipeline.run import run_slide

__all__ = ["RunOptions", "SlideSummary", "run_slide"]
