"""The method (Segment Any Tissue), pure: arrays in, arrays out; no I/O, no models of its own
(`engine.Engine` / `engine.Backbone` are lent by the caller), no thread pools (`engine.Workers`).

This module is its one door: code outside `wsi_sat.sat` imports these names and nothing else of
it. The steps, in order:
- reference, once: `prepare_embedding` (views → labelled bank → self-calibration);
- a slide's decision, once: `survey_patches` per surveyed tile, then `decide_slide`;
- per image: `segment_image` (matching → scoring → prompts → decoding → clean-up), or for a
  batch of tiles on an accelerator `decided_maps` + `decided_result`;
- per slide tile: `keep_on_tissue` (glass is never the target on its own).
"""

from wsi_sat.sat.engine import ONE_THREAD, Backbone, Encoding, Engine, PatchGrid, Workers
from wsi_sat.sat.glass import keep_on_tissue
from wsi_sat.sat.instances import ObjectSizes
from wsi_sat.sat.metrics import dice, iou
from wsi_sat.sat.patches import stains
from wsi_sat.sat.prepare import Example, prepare_embedding
from wsi_sat.sat.reference import (
    Calibration,
    ReferenceEmbedding,
    validate_negative_mask,
    validate_reference_mask,
)
from wsi_sat.sat.segment import (
    SegmentResult,
    decided_maps,
    decided_maps_fit,
    decided_result,
    segment_image,
)
from wsi_sat.sat.survey import SurveyPatches, decide_slide, survey_patches
from wsi_sat.sat.views import standard_views

__all__ = ["ONE_THREAD", "Backbone", "Calibration", "Encoding", "Engine", "Example", "PatchGrid",
           "ObjectSizes", "ReferenceEmbedding", "SegmentResult", "SurveyPatches", "Workers", "decide_slide",
           "decided_maps", "decided_maps_fit", "decided_result", "dice", "iou",
           "keep_on_tissue", "prepare_embedding", "segment_image", "standard_views", "stains",
           "survey_patches",
           "validate_negative_mask", "validate_reference_mask"]
