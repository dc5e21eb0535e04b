"""One image through the method, after the encoder: matching → self-training → prompts →
decoding → clean-up. Pure: no threads, no process state, no I/O; the caller encodes (see
wsi_sat.segmenter for batching and prefetching)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from wsi_sat.config import SatConfig
from wsi_sat.sat.device_map import decision_probability, fits_device_map
from wsi_sat.sat.engine import ONE_THREAD, Encoding, Engine, PatchGrid, Workers
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


def segment_image(engine: Engine, enc: Encoding, image: np.ndarray, grid: PatchGrid,
                  reference: ReferenceEmbedding, cfg: SatConfig, *, mpp: float | None = None,
                  tissue: np.ndarray | None = None, timings: dict[str, float] | None = None,
                  workers: Workers = ONE_THREAD) -> SegmentResult:
    """Segment one encoded image like the reference. With a slide's decision
    (`reference.decision`) every patch is scored by it; otherwise the self-training is fitted
    on this image, and `tissue` ((H, W) bool) limits it to patches that are mostly tissue.
    Predictions are not masked here. `timings` (stage → seconds) is filled and returned with
    the result; `workers` are the caller's threads for the matching."""
    timings = {} if timings is None else timings
    cal = reference.calibration
    t = time.perf_counter()
    feats = reference.features(grid, patch_colour(image, grid.grid_hw, grid.patch_hw))
    result = _scored(feats, grid, reference, cfg, tissue, workers)
    timings["match"] = time.perf_counter() - t
    t = time.perf_counter()
    pred: Prediction = predict(engine, enc, image, grid, feats, result, cal.threshold, cal.mode,
                               reference.pixel_model, cfg, objects=reference.objects)
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


def _scored(feats: np.ndarray, grid: PatchGrid, reference: ReferenceEmbedding, cfg: SatConfig,
            tissue: np.ndarray | None, workers: Workers) -> MatchResult:
    """The image's patches matched and scored: by the slide's decision when there is one, else
    by the self-training fitted on this image's (tissue) patches."""
    cal = reference.calibration
    if reference.decision is not None:  # a slide's decision is the margin
        margin = reference.decision.margin(feats)
        if cal.mode == "map":  # which is all the map mode reads: no matching
            return MatchResult.margin_only(margin)
        # prompts read the votes and the backward labels
        return replace(match(feats, reference.bank, reference.labels, cfg.matching.top_k,
                             workers=workers), margin=margin)
    # map mode decodes the margin alone: the votes (prompts only) are not computed
    result = match(feats, reference.bank, reference.labels, cfg.matching.top_k,
                   votes=cal.mode != "map", workers=workers)
    valid = None
    if tissue is not None:
        valid = (mask_fraction(tissue, grid.grid_hw, grid.patch_hw).ravel()
                 >= cfg.matching.self_train_min_tissue)
    return refine_match(result, feats, cal.threshold, cfg, valid)


SAM_STRIDE_PX = 16  # encoder-input pixels per SAM embedding cell


def device_patch_px(enc: Encoding) -> int | None:
    """Image pixels per embedding cell when whole pixels tile it (tiles), else None."""
    patch = SAM_STRIDE_PX / enc.scale
    return int(patch) if float(patch).is_integer() else None


def decided_maps_fit(encoded: list[Encoding], images: list[np.ndarray],
                     reference: ReferenceEmbedding, backbone: str) -> bool:
    """Whether `decided_maps` segments this batch (see `fits_device_map`)."""
    if not encoded or len({im.shape for im in images}) != 1:
        return False
    patch = device_patch_px(encoded[0])
    return patch is not None and all(device_patch_px(e) == patch for e in encoded) and \
        fits_device_map(reference, reference.calibration.mode, backbone, images[0].shape[:2],
                        patch)


def decided_maps(encoded: list[Encoding], images: list[np.ndarray],
                 reference: ReferenceEmbedding, cfg: SatConfig) -> tuple[np.ndarray, int]:
    """(B, H, W) float32 probabilities of a batch of same-sized tiles in the map mode under a
    slide's decision, computed on the encoder's device (wsi_sat.sat.device_map), and the image
    pixels per embedding cell. Each, through `decided_result`, equals `segment_image` within
    float32 rounding (tested). Only for batches that `decided_maps_fit`."""
    patch = device_patch_px(encoded[0])
    if patch is None:
        raise ValueError("decided_maps: the batch does not fit the device map")
    gh, gw = (-(-images[0].shape[0] // patch), -(-images[0].shape[1] // patch))
    emb = torch.stack([e.embedding[:, :gh, :gw] for e in encoded])
    pixels = torch.from_numpy(np.stack(images)).to(emb.device)
    prob = decision_probability(emb, pixels, reference, patch, cfg.decode.map_temperature)
    return prob.cpu().numpy(), patch


def decided_result(prob: np.ndarray, patch_px: int, cfg: SatConfig, mpp: float | None,
                   timings: dict[str, float]) -> SegmentResult:
    """A tile's result from its decided probability map: threshold and clean-up (CPU; OpenCV
    releases the interpreter, so tiles are cleaned up in parallel threads)."""
    t = time.perf_counter()
    mask = clean_mask(prob > 0.5, cfg.postprocess, mpp)
    stages = {**timings, "postprocess": time.perf_counter() - t}
    return SegmentResult(mask, None, prob, "map", 0, 0, stages, (float(patch_px),) * 2)
