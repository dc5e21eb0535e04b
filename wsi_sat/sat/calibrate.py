"""Self-calibration: run the method on the reference itself and keep what reproduces its mask.

No network weight changes. Every reference view is scored against the bank with its own
neighbourhood left out (the bank never sees the patch it is asked about), then:
1. threshold: the margin threshold with the best mean Dice over the views;
2. pixel refinement: fitted on one half of each reference and judged on the other half (and
   vice versa), kept only if it beats the plain map there;
3. mode: map or union, whichever reproduces the reference views best; instances (the map's
   foreground split into objects) when the reference holds many small objects.
"""

from __future__ import annotations

import logging

import numpy as np

from wsi_sat.config import DecodeMode, SatConfig
from wsi_sat.sat.decode import map_probability
from wsi_sat.sat.engine import ONE_THREAD, Engine, Workers
from wsi_sat.sat.instances import ObjectSizes
from wsi_sat.sat.maps import upsample
from wsi_sat.sat.matching import MatchResult, match
from wsi_sat.sat.metrics import dice
from wsi_sat.sat.open_set import open_threshold
from wsi_sat.sat.pixel import fit_pixel_model, pixel_features, predict_pixels
from wsi_sat.sat.predict import predict, refine_match
from wsi_sat.sat.reference import Calibration, ReferenceEmbedding, ReferenceView

log = logging.getLogger(__name__)


def leave_out_match(view: ReferenceView, ref: ReferenceEmbedding, cfg: SatConfig,
                    whole_reference: bool = False, *, workers: Workers = ONE_THREAD
                    ) -> tuple[np.ndarray, MatchResult]:
    """Match a reference view to the bank, leaving out bank patches near each query patch
    (`whole_reference`: every patch of the view's own reference, with
    sat.calibration.across_references)."""
    gh, gw = view.grid.grid_hw
    feats = ref.features(view.grid, view.colour)
    qxy = view.view.to_original(view.grid.centres_xy()).astype(np.float32)
    radius = (cfg.matching.exclude_radius_patches + 0.5) * max(view.grid.patch_hw) / view.view.scale
    if whole_reference:
        radius = np.inf
    exclude = (qxy, np.full(gh * gw, view.ref_id, np.int32), ref.pos_xy, ref.ref_ids, radius)
    return feats, match(feats, ref.bank, ref.labels, cfg.matching.top_k, exclude=exclude,
                        workers=workers)


def choose_threshold(margins: list[np.ndarray], views: list[ReferenceView],
                     candidates: list[float], negative_margins: list[np.ndarray] = (),
                     negative_masks: list[np.ndarray] = (), negative_weight: float = 1.0
                     ) -> tuple[float, float]:
    """Threshold with the best mean Dice over the reference views, less `negative_weight` x the mean fraction of negative-example pixels called target; ties
    go to the one closest to zero."""
    best = (-1.0, 0.0)
    for t in sorted(candidates, key=abs):
        score = float(np.mean([dice(m > t, v.mask) for m, v in zip(margins, views)]))
        if negative_margins:
            score -= negative_weight * float(np.mean([(m[k] > t).mean() for m, k in
                                    zip(negative_margins, negative_masks)]))
        if score > best[0] + 1e-6:
            best = (score, t)
    return best[1], best[0]


def _halves(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two complementary boolean halves split across the longer side."""
    h, w = shape
    a = np.zeros(shape, dtype=bool)
    if w >= h:
        a[:, : w // 2] = True
    else:
        a[: h // 2] = True
    return a, ~a


def _pixel_cross_check(originals: list[ReferenceView], margins: list[np.ndarray],
                       features: list[np.ndarray], threshold: float, cfg: SatConfig
                       ) -> tuple[float, float]:
    """Dice of the pixel model vs the plain map, each half judged by a model fitted on the
    other half. Returns (pixel dice, map dice)."""
    pix, plain = [], []
    for view, margin, feats in zip(originals, margins, features):
        for train, test in (_halves(view.mask.shape), _halves(view.mask.shape)[::-1]):
            sub_mask = view.mask & train
            model = fit_pixel_model([feats[train].reshape(1, -1, feats.shape[-1])],
                                    [sub_mask[train].reshape(1, -1)], cfg.pixel, cfg.seed)
            if model is None:
                continue
            prob = predict_pixels(model, feats)
            pix.append(dice(prob[test] > 0.5, view.mask[test]))
            plain.append(dice(margin[test] > threshold, view.mask[test]))
    if not pix:
        return -1.0, 0.0
    return float(np.mean(pix)), float(np.mean(plain))


def _pixel_margins(views: list[ReferenceView], matched: list[tuple[np.ndarray, MatchResult]]
                   ) -> list[np.ndarray]:
    return [
        upsample(res.margin.reshape(v.grid.grid_hw), v.grid.patch_hw, v.mask.shape)
        for v, (_, res) in zip(views, matched)
    ]


def calibrate(views: list[ReferenceView], ref: ReferenceEmbedding, engine: Engine,
              cfg: SatConfig, workers: Workers = ONE_THREAD) -> ReferenceEmbedding:
    """Return `ref` with the calibrated threshold, mode, open threshold and (optional) pixel
    model. Negative-example views count against the threshold (their pixels called target);
    the rest is judged on the reference views. `workers`: the caller's threads."""
    open_thr = open_threshold(ref, cfg.open_set, cfg.matching.top_k)
    negative_views = [v for v in views if v.negative]
    views = [v for v in views if not v.negative]
    across = cfg.calibration.across_references and len({v.ref_id for v in views}) >= 2
    matched = [leave_out_match(v, ref, cfg, across, workers=workers) for v in views]
    margins = _pixel_margins(views, matched)
    if not cfg.calibration.enabled:
        thr = cfg.calibration.default_threshold
        mode = "union" if cfg.decode.mode == "auto" else cfg.decode.mode
        return ref.with_calibration(Calibration(thr, mode, False, {}, open_thr), None)

    negative_margins = _pixel_margins(
        negative_views, [leave_out_match(v, ref, cfg, workers=workers) for v in negative_views])
    thr, thr_dice = choose_threshold(margins, views, cfg.calibration.thresholds,
                                     negative_margins, [v.mask for v in negative_views],
                                     cfg.calibration.negative_weight)
    scores: dict[str, float] = {"threshold_dice": thr_dice}
    if cfg.matching.self_train:  # judge the rest on the refined margins targets will get
        matched = [(f, refine_match(r, f, thr, cfg)) for f, r in matched]
        margins = _pixel_margins(views, matched)

    originals = [i for i, v in enumerate(views) if v.view.is_identity]
    judged_refs = sorted({views[i].ref_id for i in originals})[
        : cfg.calibration.max_judged_references]
    judged = [i for i in originals if views[i].ref_id in judged_refs]
    pixel_model = None
    if cfg.pixel.enabled:
        feats = [pixel_features(views[i].image, margins[i] - thr, cfg.pixel.sigmas_px)
                 for i in originals]  # computed once: cross-check, then the final fit
        pix_dice, plain_dice = _pixel_cross_check(
            [views[i] for i in judged], [margins[i] for i in judged],
            [feats[originals.index(i)] for i in judged], thr, cfg)
        scores.update(pixel_halves_dice=pix_dice, map_halves_dice=plain_dice)
        if pix_dice >= plain_dice + cfg.calibration.pixel_min_gain:
            pixel_model = fit_pixel_model(feats, [views[i].mask for i in originals],
                                          cfg.pixel, cfg.seed)
    mode = _choose_mode(views, matched, margins, judged, thr, engine, cfg, scores,
                        pixel_model is not None, ref.objects)
    log.info("self-calibration: threshold %.3f, mode %s, pixel %s, %s", thr, mode,
             pixel_model is not None, {k: round(v, 3) for k, v in scores.items()})
    return ref.with_calibration(Calibration(thr, mode, pixel_model is not None, scores,
                                            open_thr), pixel_model)


def _choose_mode(views: list[ReferenceView], matched: list[tuple[np.ndarray, MatchResult]],
                 margins: list[np.ndarray], originals: list[int], thr: float, engine: Engine,
                 cfg: SatConfig, scores: dict[str, float], pixel: bool,
                 objects: ObjectSizes | None) -> DecodeMode:
    """The decoding mode (`sat.decode.mode` auto): map or union, whichever reproduces the
    reference views best (its Dice per mode added to `scores`), then instances when the
    reference holds many small objects."""
    if cfg.decode.mode != "auto":
        return cfg.decode.mode
    judged = originals + [i for i in range(len(views)) if i not in originals][:1]
    for mode in ("map", "union"):
        vals = []
        for i in judged:
            v = views[i]
            feats, res = matched[i]
            prob = map_probability(margins[i], thr, cfg.decode.map_temperature).astype(np.float32)
            pred = predict(engine, v.encoded, v.image, v.grid, feats, res, thr, mode, None,
                           cfg, prob=prob)
            vals.append(dice(pred.mask, v.mask))
        scores[f"mode_{mode}_dice"] = float(np.mean(vals))
    if pixel:  # judged on held-out halves, not on its own training pixels
        scores["mode_map_dice"] += scores["pixel_halves_dice"] - scores["map_halves_dice"]
    if objects is not None and many_small_objects(objects, views[originals[0]], cfg):
        return "instances"
    return max(("map", "union"), key=lambda m: scores[f"mode_{m}_dice"])


def many_small_objects(objects: ObjectSizes, view: ReferenceView, cfg: SatConfig) -> bool:
    """Whether the reference's objects are many and small enough to be counted."""
    h, w = view.encoded.input_hw
    return (objects.count >= cfg.calibration.instances_min_objects
            and objects.area_median <= cfg.calibration.instances_max_object_fraction * h * w)
