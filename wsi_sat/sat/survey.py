"""A slide's decision, made once from a survey of its tissue (the method's half of the survey; the
slide reads, the lanes and the tiles' encoding are the pipeline's).

Each surveyed tile gives a sample of its tissue patches with their features and their match
against the reference (`survey_patches`); from all of them `decide_slide` adds the tissue the
reference never showed to the bank as background and fits the slide's classifier (see
`wsi_sat.sat.open_set`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wsi_sat.config import SatConfig
from wsi_sat.sat.engine import ONE_THREAD, PatchGrid, Workers
from wsi_sat.sat.matching import match
from wsi_sat.sat.open_set import (
    shown_margin,
    slide_background,
    slide_decision,
    with_background,
)
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.reference import ReferenceEmbedding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurveyPatches:
    """A surveyed tile's sampled tissue patches: fused features, how far each lies above the
    open threshold of the example most like it (None: no example has one) and its margin
    against the reference bank."""

    feats: np.ndarray
    shown: np.ndarray | None
    margin: np.ndarray


def survey_patches(reference: ReferenceEmbedding, image: np.ndarray, grid: PatchGrid,
                   tissue: np.ndarray, cfg: SatConfig, max_patches: int,
                   sample_key: int) -> SurveyPatches | None:
    """Up to `max_patches` of the tile's patches that are mostly tissue (`tissue`: (H, W) bool),
    sampled with the seed (`cfg.seed`, `sample_key`), matched against the reference; None when
    the tile has no tissue patch."""
    idx = np.nonzero(mask_fraction(tissue, grid.grid_hw, grid.patch_hw).ravel()
                     >= cfg.matching.self_train_min_tissue)[0]
    if not len(idx):
        return None
    if len(idx) > max_patches:
        rng = np.random.default_rng((cfg.seed, sample_key))
        idx = np.sort(rng.choice(idx, max_patches, replace=False))
    f = reference.features(grid, patch_colour(image, grid.grid_hw, grid.patch_hw))[idx]
    # the never-shown rule reads the references alone: a negative example must not make
    # tissue unlike it look never shown (its own kind is suppressed by the slide's decision)
    own = ~reference.negative
    res = match(f, reference.bank[own], reference.labels[own], cfg.matching.top_k, votes=False)
    return SurveyPatches(f, shown_margin(reference, f, cfg.matching.top_k), res.margin)


def decide_slide(reference: ReferenceEmbedding, surveyed: list[SurveyPatches | None],
                 cfg: SatConfig, workers: Workers = ONE_THREAD
                 ) -> tuple[ReferenceEmbedding, dict[str, Any]]:
    """The reference with the slide's never-shown tissue as background and the slide's
    decision, from the surveyed tiles' patches (None: a tile without tissue patches)."""
    ocfg = cfg.open_set
    rows = [s for s in surveyed if s is not None]
    if not rows:
        return reference, {"enabled": True, "tiles": len(surveyed), "patches": 0}
    x = np.concatenate([s.feats for s in rows])
    info: dict[str, Any] = {"enabled": True, "tiles": len(surveyed), "survey_patches": len(x),
                            "open_threshold": reference.calibration.open_threshold}
    embedding = reference
    if ocfg.enabled and rows[0].shown is not None:
        picked, summary = slide_background(x, np.concatenate([s.shown for s in rows]),
                                           np.concatenate([s.margin for s in rows]),
                                           reference.calibration.threshold, ocfg, cfg.seed,
                                           workers)
        embedding = with_background(reference, x[picked])
        info["background"] = summary
        log.info("survey: %d tiles, %d patches, %.1f of %d clusters never shown by the reference "
                 "(%.0f %% of the tissue), %d patches added as background", len(surveyed), len(x),
                 summary["novel_clusters"], summary["clusters"],
                 100 * summary.get("novel_fraction", 0.0), summary["patches"])
    if ocfg.slide_decision:
        own = ~embedding.negative  # negative examples act through the decision's veto
        against = match(x, embedding.bank[own], embedding.labels[own], cfg.matching.top_k,
                        votes=False)
        decision, info["decision"] = slide_decision(embedding, x, against.margin, cfg.matching,
                                                    cfg.seed, ocfg.negative_quantile)
        embedding = replace(embedding, decision=decision)
    return embedding, info
