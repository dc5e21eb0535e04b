"""From a match result to a mask, in one decoding mode. Shared by segmentation and by
self-calibration, so the reference is judged by exactly the code that segments targets."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wsi_sat.config import DecodeMode, SatConfig
from wsi_sat.sat.decode import decode_instances, decode_union, map_probability
from wsi_sat.sat.engine import Encoding, Engine, PatchGrid
from wsi_sat.sat.instances import ObjectSizes, split_instances
from wsi_sat.sat.maps import upsample
from wsi_sat.sat.matching import MatchResult
from wsi_sat.sat.pixel import pixel_features, predict_pixels
from wsi_sat.sat.prompts import Prompts, feature_space, physical_space
from wsi_sat.sat.transduce import self_train


@dataclass(frozen=True)
class Prediction:
    mask: np.ndarray  # (H, W) bool
    labels: np.ndarray | None  # (H, W) int32 instance labels (instances mode), else None
    prompts: Prompts | None
    map_prob: np.ndarray  # (H, W) float32 foreground probability from matching (+ pixels)


def refine_match(result: MatchResult, feats: np.ndarray, threshold: float, cfg: SatConfig,
                 valid: np.ndarray | None = None) -> MatchResult:
    """The match with its margin re-scored by transductive self-training (if enabled), fitted
    on the `valid` patches only when given."""
    if not cfg.matching.self_train:
        return result
    m = cfg.matching
    margin = self_train(feats, result.margin, threshold, m, cfg.seed, valid)
    return replace(result, margin=margin)


def map_prob(image: np.ndarray, grid: PatchGrid, result: MatchResult, threshold: float,
             pixel_model: object | None, cfg: SatConfig) -> tuple[np.ndarray, np.ndarray]:
    """Upsampled margin and the foreground probability (pixel model if given, else the map)."""
    hw = image.shape[:2]
    margin_up = upsample(result.margin.reshape(grid.grid_hw), grid.patch_hw, hw)
    if pixel_model is not None:
        feats = pixel_features(image, margin_up - threshold, cfg.pixel.sigmas_px)
        return margin_up, predict_pixels(pixel_model, feats)
    return margin_up, map_probability(margin_up, threshold,
                                      cfg.decode.map_temperature).astype(np.float32, copy=False)


def make_prompts(grid: PatchGrid, feats: np.ndarray, result: MatchResult, threshold: float,
                 enc: Encoding, cfg: SatConfig, instances: bool = False) -> Prompts:
    cand = feature_space(result, feats, threshold, cfg.prompts, cfg.matching.cycle, cfg.seed)
    return physical_space(grid.centres_xy(), cand, cfg.prompts, 1.0 / enc.scale, instances)


def predict(
    engine: Engine,
    enc: Encoding,
    image: np.ndarray,
    grid: PatchGrid,
    feats: np.ndarray,
    result: MatchResult,
    threshold: float,
    mode: DecodeMode,
    pixel_model: object | None,
    cfg: SatConfig,
    prob: np.ndarray | None = None,
    objects: ObjectSizes | None = None,
) -> Prediction:
    """One image's mask in `mode` (map, union, instances or sam_instances); `objects`: the
    reference's objects (instances: their size)."""
    if prob is None:
        _, prob = map_prob(image, grid, result, threshold, pixel_model, cfg)
    if mode not in ("map", "union", "instances", "sam_instances"):
        raise ValueError(f"unknown decoding mode {mode!r}: map, union, instances or "
                         "sam_instances")
    fg = prob > 0.5
    if mode == "map":
        return Prediction(fg, None, None, prob)
    if mode == "instances":
        if objects is None:
            raise ValueError("the instances mode needs the reference's objects")
        labels = split_instances(fg, objects.radius / enc.scale, cfg.postprocess.min_area_px,
                                 seed_distance_radii=cfg.decode.seed_distance_radii,
                                 smooth_radii=cfg.decode.smooth_radii)
        return Prediction(labels > 0, labels, None, prob)
    prompts = make_prompts(grid, feats, result, threshold, enc, cfg, mode == "sam_instances")
    if prompts.empty:
        return Prediction(np.zeros_like(fg), None, prompts, prob)
    if mode == "union":
        mask_prompt = prob if cfg.decode.use_map_prompt else None
        return Prediction(decode_union(engine, enc, prompts, mask_prompt, cfg.decode), None,
                          prompts, prob)
    labels = decode_instances(engine, enc, prompts, fg, cfg.decode)
    return Prediction(labels > 0, labels, prompts, prob)
