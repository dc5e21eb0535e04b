"""Prompt engineering: matched patches → SAM point prompts.

Feature space: keep confident, cycle-consistent matches and cluster the positives (k-means on
their features). Physical space: exclusion (negatives near positives are dropped), sparse
sampling (greedy radius grouping that keeps, per group, the point farthest from the other class,
using a k-d tree: no O(n²) Python loops), caps on the number of points, and fallbacks when a
side is empty. Coordinates are original image pixels (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from wsi_sat.config import PromptConfig
from wsi_sat.sat.clustering import kmeans_labels
from wsi_sat.sat.matching import MatchResult


@dataclass(frozen=True)
class Prompts:
    pos_xy: np.ndarray  # (P, 2)
    pos_cluster: np.ndarray  # (P,) feature-space cluster of each positive
    neg_xy: np.ndarray  # (Q, 2)

    @property
    def empty(self) -> bool:
        return len(self.pos_xy) == 0


@dataclass(frozen=True)
class Candidates:
    pos: np.ndarray  # indices of positive patches
    neg: np.ndarray  # indices of negative patches
    pos_cluster: np.ndarray


def feature_space(result: MatchResult, feats: np.ndarray, threshold: float, cfg: PromptConfig,
                  cycle: bool, seed: int) -> Candidates:
    """Confident, cycle-consistent candidates; positives clustered in feature space."""
    if not result.voted:
        raise ValueError("prompts need the reference → target votes: match(..., votes=True)")
    margin = result.margin
    confident_fg = margin > threshold + cfg.min_margin
    confident_bg = margin < threshold - cfg.min_margin
    if cycle:
        pos = np.nonzero(result.positives & confident_fg)[0]
        neg_mask = (result.negatives | result.hard_negatives) & confident_bg
    else:
        pos = np.nonzero((result.fg_votes > 0) & confident_fg)[0]
        neg_mask = (result.bg_votes > 0) & confident_bg
    if len(pos) == 0:  # fallback: the map's own confident foreground, best first
        pos = np.nonzero(confident_fg)[0]
        pos = pos[np.argsort(-margin[pos])][: cfg.fallback_factor * cfg.max_positive]
    neg = np.nonzero(neg_mask)[0]
    if len(neg) == 0:  # fallback: the least foreground-like patches
        below = np.nonzero(margin < threshold)[0]
        neg = below[np.argsort(margin[below])][: cfg.fallback_factor * max(cfg.max_negative, 1)]
    clusters = np.zeros(len(pos), dtype=np.int32)
    k = min(cfg.clusters, len(pos))
    if k > 1:
        clusters = kmeans_labels(feats[pos], k, seed)
        clusters = clusters.astype(np.int32)
    return Candidates(pos, neg, clusters)


def sparse_sample(points: np.ndarray, other: np.ndarray, radius: float, cap: int) -> np.ndarray:
    """Greedy radius grouping: visit points farthest from the other class first; each kept point
    absorbs the points within `radius`. Returns indices of kept points, at most `cap`."""
    if len(points) == 0 or cap <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(other):
        far, _ = cKDTree(other).query(points)
    else:
        far = np.zeros(len(points))
    order = np.argsort(-far, kind="stable")
    tree = cKDTree(points)
    taken = np.zeros(len(points), dtype=bool)
    kept: list[int] = []
    for i in order:
        if taken[i]:
            continue
        kept.append(int(i))
        taken[tree.query_ball_point(points[i], radius)] = True
        if len(kept) >= cap:
            break
    return np.asarray(kept, dtype=np.int64)


def physical_space(centres_xy: np.ndarray, cand: Candidates, cfg: PromptConfig,
                   px_per_input: float, instances: bool = False) -> Prompts:
    """Exclusion, then sparse sampling and caps. Radii are in encoder-input pixels and are
    converted with `px_per_input` (original pixels per encoder-input pixel). With `instances`
    the positives are sampled about one object apart (one decode each)."""
    pos_xy = centres_xy[cand.pos]
    neg_xy = centres_xy[cand.neg]
    if len(pos_xy) and len(neg_xy) and cfg.exclusion_radius_input_px > 0:
        d, _ = cKDTree(pos_xy).query(neg_xy)
        neg_xy = neg_xy[d > cfg.exclusion_radius_input_px * px_per_input]
    radius = cfg.sample_radius_input_px * px_per_input
    if instances:
        keep_pos = sparse_sample(pos_xy, neg_xy, cfg.instance_sample_radius_input_px * px_per_input,
                                 cfg.max_instances)
    else:
        keep_pos = sparse_sample(pos_xy, neg_xy, radius, cfg.max_positive)
    keep_neg = sparse_sample(neg_xy, pos_xy, radius, cfg.max_negative)
    return Prompts(
        pos_xy[keep_pos].astype(np.float32),
        cand.pos_cluster[keep_pos],
        neg_xy[keep_neg].astype(np.float32),
    )
