"""The whole-slide pipeline by stage: plan.py (tissue, grid, batches) → coarse.py (optional
coarse-to-fine selection) → batch.py (one batch: segment, write chunks and a shard) →
finalize.py (merge, pyramid, GeoJSON, overview, run.json); run.py composes them and
reference.py prepares the reference for tiles."""

from wsi_sat.pipeline.finalize import SlideSummary
from wsi_sat.pipeline.plan import RunOptions
from wsi_sat.pipeline.reference import SlideReference, prepare_slide_reference
from wsi_sat.pipeline.run import run_slide

__all__ = ["RunOptions", "SlideReference", "SlideSummary", "prepare_slide_reference",
           "run_slide"]
