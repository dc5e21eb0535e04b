"""One image through the method, after the encoder: matching → self-training → prompts →
decoding → clean-up. Pure: no threads, no process state, no I/O; the caller encodes (see
wsi_sat.segmenter for batching and prefetching)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from wsi_sat.config import SatConfig
from wsi_sat.models.features import PatchGrid
from wsi_sat.models.sam import Encoded, SamEngine
from wsi_sat.sat.device_map import decision_probability, fits_device_map
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


SAM_STRIDE_PX = 16  # encoder-input pixels per SAM embedding cell


def device_patch_px(enc: Encoded) -> int | None:
    """Image pixels per embedding cell when whole pixels tile it (tiles), else None."""
    patch = SAM_STRIDE_PX / enc.scale
    return int(patch) if float(patch).is_integer() else None


def decided_maps_fit(encoded: list[Encoded], images: list[np.ndarray],
                     reference: ReferenceEmbedding, backbone: str) -> bool:
    """Whether `segment_decided_maps` segments this batch (see `fits_device_map`)."""
    if not encoded or len({im.shape for im in images}) != 1:
        return False
    patch = device_patch_px(encoded[0])
    return patch is not None and all(device_patch_px(e) == patch for e in encoded) and \
        fits_device_map(reference, reference.calibration.mode, backbone, images[0].shape[:2],
                        patch)


def decided_probabilities(encoded: list[Encoded], images: list[np.ndarray],
                          reference: ReferenceEmbedding, cfg: SatConfig) -> np.ndarray:
    """(B, H, W) float32 probabilities of a batch of same-sized tiles in the map mode under a
    slide's decision, computed on the encoder's device (wsi_sat.sat.device_map)."""
    patch = device_patch_px(encoded[0])
    assert patch is not None
    gh, gw = (-(-images[0].shape[0] // patch), -(-images[0].shape[1] // patch))
    emb = torch.stack([e.embedding[:, :gh, :gw] for e in encoded])
    pixels = torch.from_numpy(np.stack(images)).to(emb.device)
    return decision_probability(emb, pixels, reference, patch,
                                cfg.decode.map_temperature).cpu().numpy()


def decided_result(prob: np.ndarray, patch_px: int, cfg: SatConfig, mpp: float | None,
                   timings: dict[str, float]) -> SegmentResult:
    """A tile's result from its decided probability map: threshold and clean-up (CPU; OpenCV
    releases the interpreter, so tiles are cleaned up in parallel threads)."""
    t = time.perf_counter()
    mask = clean_mask(prob > 0.5, cfg.postprocess, mpp)
    stages = {**timings, "postprocess": time.perf_counter() - t}
    return SegmentResult(mask, None, prob, "map", 0, 0, stages, (float(patch_px),) * 2)


def segment_decided_maps(encoded: list[Encoded], images: list[np.ndarray],
                         reference: ReferenceEmbedding, cfg: SatConfig, mpp: float | None,
                         timings: dict[str, float]) -> list[SegmentResult]:
    """A batch of same-sized tiles in the map mode under a slide's decision: the map on the
    encoder's device, then clean-up per tile. Equal to `segment_image` on each within float32
    rounding (tested). `timings` (shared stages such as the encoder's, per tile) is copied into
    each result."""
    t = time.perf_counter()
    prob = decided_probabilities(encoded, images, reference, cfg)
    stages = {**timings, "match": (time.perf_counter() - t) / len(images)}
    patch = device_patch_px(encoded[0]) or SAM_STRIDE_PX
    return [decided_result(p, patch, cfg, mpp, stages) for p in prob]
