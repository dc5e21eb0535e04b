"""One image through the method, after the encoder: matching → self-training → prompts →
decoding → clean-up. Pure: no threads, no process state, no I/O; the caller encodes (see
wsi_sat.segmenter for batching and prefetching)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from wsi_sat.config import SatConfig
from wsi_sat.models.features import PatchGrid
from wsi_sat.models.sam import Encoded, SamEngine
from wsi_sat.sat.matching import MatchResult, match
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.postprocess import clean_labels, clean_mask
from wsi_sat.sat.predict import Prediction, predict, refine_match
from wsi_sat.sat.reference import ReferenceEmbedding


@dataclass(frozen=True)
class SegmentResult:
    mask: np.ndarray  # (H, W) bool at the image's original size
    labels: np.ndarray | None  # instance labels (instances mode)
    prob: np.ndarray | None  # (H, W) foreground probability of the matching map (scores)
    mode: str
    n_positive: int
    n_negative: int
    timings_s: dict[str, float] = field(default_factory=dict)
    patch_hw: tuple[float, float] = (16.0, 16.0)  # the feature grid's patch, in image pixels


def segment_image(engine: SamEngine, enc: Encoded, image: np.ndarray, grid: PatchGrid,
                  reference: ReferenceEmbedding, cfg: SatConfig, mpp: float | None = None,
                  tissue: np.ndarray | None = None, timings: dict[str, float] | None = None
                  ) -> SegmentResult:
    """Segment one encoded image like the reference. With a slide's decision
    (`reference.decision`) every patch is scored by it; otherwise the self-training is fitted
    on this image, and `tissue` ((H, W) bool) limits it to patches that are mostly tissue.
    Predictions are not masked here. `timings` (stage → seconds) is filled and returned with
    the result."""
    timings = {} if timings is None else timings
    cal = reference.calibration
    t = time.perf_counter()
    colour = patch_colour(image, grid.grid_hw, grid.patch_hw)
    feats = reference.features(grid, colour)
    if reference.decision is not None:  # a slide's decision is the margin
        margin = reference.decision.margin(feats)
        if cal.mode == "map":  # which is all the map mode reads: no matching
            result = MatchResult.margin_only(margin)
        else:  # prompts read the votes and the backward labels
            result = replace(match(feats, reference.bank, reference.labels, cfg.matching.top_k),
                             margin=margin)
    else:
        # map mode decodes the margin alone: the votes (prompts only) are not computed
        result = match(feats, reference.bank, reference.labels, cfg.matching.top_k,
                       votes=cal.mode != "map")
        valid = None
        if tissue is not None:
            valid = (mask_fraction(tissue, grid.grid_hw, grid.patch_hw).ravel()
                     >= cfg.matching.self_train_min_tissue)
        result = refine_match(result, feats, cal.threshold, cfg, valid)
    timings["match"] = time.perf_counter() - t
    t = time.perf_counter()
    pred: Prediction = predict(engine, enc, image, grid, feats, result, cal.threshold, cal.mode,
                               reference.pixel_model, cfg)
    timings["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    mask = clean_mask(pred.mask, cfg.postprocess, mpp)
    labels = None
    if pred.labels is not None:
        labels = clean_labels(pred.labels * mask, cfg.postprocess, mpp)
        mask = labels > 0
    timings["postprocess"] = time.perf_counter() - t
    n_pos = 0 if pred.prompts is None else len(pred.prompts.pos_xy)
    n_neg = 0 if pred.prompts is None else len(pred.prompts.neg_xy)
    return SegmentResult(mask, labels, pred.map_prob, cal.mode, n_pos, n_neg, dict(timings),
                         grid.patch_hw)
