"""Open set: tissue the reference never showed stays empty.

The matching margin only says "closer to the reference's foreground than to its background";
a reference's background is a thin sample (a GlaS image is mostly gland), so tissue it never
showed — dermis, epidermis, fat, muscle — lands on either side by chance. Two pieces fix that:

1. `open_threshold`: how similar a target patch is to an example's foreground when the
   patch is NOT part of the bank — measured on each example itself, held out: each half of it
   against the other half, pooled over the examples. Its low quantile is the least foreground
   similarity a real target patch shows (`shown_margin`).
2. `slide_background`: over a sample of a slide's tissue patches (the survey), clusters in
   feature space whose typical patch is below that similarity AND below the margin threshold
   are tissue the reference never showed; their patches join the bank as background. Every
   tile is then matched against reference + slide background, so the decision is made once
   per slide with the slide's own tissue in view, and a patch of such tissue meets its own
   kind in the background bank (its margin drops) even where its similarity alone was
   ambiguous. Clusters are judged by their median, not patch by patch: a target cluster with
   a few odd patches is kept whole.
3. `slide_decision`: one linear classifier per slide, fitted on the reference bank's labelled
   patches (target / background / negative examples / the slide's never-shown tissue) and on
   the survey's confident patches, scores every tile. A tile is judged by the slide's decision,
   not by a classifier refitted on that tile alone (which finds "the most target-like part" of
   every tile, target present or not, and draws seams at tile borders).

How well this holds on real target-free tissue: docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wsi_sat.config import MatchingConfig, OpenSetConfig
from wsi_sat.sat.clustering import kmeans_labels
from wsi_sat.sat.engine import ONE_THREAD, Workers
from wsi_sat.sat.reference import ReferenceEmbedding
from wsi_sat.sat.transduce import LinearDecision, NegativeVeto, confident, fit_decision


def _topk_mean(sim: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, sim.shape[1]))
    return np.partition(sim, -k, axis=1)[:, -k:].mean(axis=1)


def held_out_fg_similarity(bank: np.ndarray, labels: np.ndarray, pos_xy: np.ndarray,
                           ref_ids: np.ndarray, top_k: int) -> dict[int, np.ndarray]:
    """Per reference, the top-k mean similarity of each of its foreground bank patches to the
    foreground of the other half of the same reference (split at the median of its longer
    spread): how alike the parts of one example of the target are."""
    fg = labels == 1
    out: dict[int, np.ndarray] = {}
    for i in np.unique(ref_ids[fg]):
        own = fg & (ref_ids == i)
        feats, xy = bank[own], pos_xy[own]
        axis = int(np.argmax(xy.max(axis=0) - xy.min(axis=0)))
        left = xy[:, axis] < np.median(xy[:, axis])
        sims = [_topk_mean(feats[a] @ feats[b].T, top_k)
                for a, b in ((left, ~left), (~left, left)) if a.any() and b.any()]
        out[int(i)] = np.concatenate(sims) if sims else np.zeros(0, np.float32)
    return out


def open_threshold(ref: ReferenceEmbedding, cfg: OpenSetConfig, top_k: int) -> float | None:
    """The least foreground similarity of a real target patch: `cfg.quantile` of the held-out
    similarity of every example's halves to each other, pooled (None when no example can be
    split). Within examples, never across them: examples that differ (a reference image and a
    gland outlined on the slide) would make the threshold fall with every one added, and with
    it the tissue called never shown."""
    sims = [s for s in held_out_fg_similarity(ref.bank, ref.labels, ref.pos_xy, ref.ref_ids,
                                              top_k).values() if len(s)]
    pooled = np.concatenate(sims) if sims else np.zeros(0)
    return float(np.quantile(pooled, cfg.quantile)) if len(pooled) >= 10 else None


def shown_margin(ref: ReferenceEmbedding, feats: np.ndarray, top_k: int) -> np.ndarray | None:
    """How far each patch's top-k foreground similarity lies above the open threshold: >= 0
    for a patch of a kind the examples showed; None without an open threshold."""
    fg = ref.labels == 1
    if ref.calibration.open_threshold is None or not fg.any():
        return None
    return _topk_mean(feats @ ref.bank[fg].T, top_k) - ref.calibration.open_threshold


def slide_background(feats: np.ndarray, shown: np.ndarray, margin: np.ndarray,
                     threshold: float, cfg: OpenSetConfig, seed: int,
                     workers: Workers = ONE_THREAD) -> tuple[np.ndarray, dict[str, float]]:
    """Indices of survey patches that are tissue the reference never showed, and a summary.

    feats (N, D) fused features of the slide's surveyed tissue patches, how far they lie
    above the open threshold of the example most like them (`shown_margin`) and their margin
    against the reference bank. k-means is run
    `cfg.restarts` times (seeds `seed`, `seed + 1`, ...); a patch is never-shown tissue when any
    partition puts it in a never-shown cluster: one partition alone decides clusters near the
    boundary by chance (the false positives on target-free tissue then move with the seed; the
    union keeps them steady). The restarts run
    on the caller's `workers` (the same partitions in any order)."""
    n = len(feats)
    k = min(cfg.clusters, n // max(1, cfg.min_cluster_patches))
    if k < 2:
        return np.zeros(0, np.int64), {"clusters": 0, "novel_clusters": 0, "patches": 0}
    x = feats.astype(np.float64)
    novel_any = np.zeros(n, bool)
    n_novel = []
    # the restarts side by side (scipy's vq releases the GIL), partitions in seed order
    partitions = list(workers.map(lambda r: kmeans_labels(x, k, seed + r), range(cfg.restarts)))
    for labels in partitions:
        novel = []
        for c in range(k):
            members = labels == c
            if members.sum() < cfg.min_cluster_patches:
                continue
            if np.median(shown[members]) < 0 and np.median(margin[members]) < threshold:
                novel.append(c)
        novel_any |= np.isin(labels, novel)
        n_novel.append(len(novel))
    idx = np.nonzero(novel_any)[0]
    if len(idx) > cfg.max_background_patches:
        idx = np.sort(np.random.default_rng(seed).choice(idx, cfg.max_background_patches,
                                                         replace=False))
    return idx, {"clusters": int(k), "restarts": int(cfg.restarts),
                 "novel_clusters": float(np.mean(n_novel)), "patches": len(idx),
                 "novel_fraction": float(novel_any.mean())}


def with_background(ref: ReferenceEmbedding, feats: np.ndarray) -> ReferenceEmbedding:
    """The reference with `feats` (fused, unit-norm) added to its bank as background; they
    belong to no reference (ref id -1, no position), so self-calibration never uses them."""
    if not len(feats):
        return ref
    m = len(feats)
    return replace(ref,
                   bank=np.concatenate([ref.bank, feats.astype(ref.bank.dtype)]),
                   labels=np.concatenate([ref.labels, np.zeros(m, ref.labels.dtype)]),
                   pos_xy=np.concatenate([ref.pos_xy, np.full((m, 2), np.nan, np.float32)]),
                   ref_ids=np.concatenate([ref.ref_ids, np.full(m, -1, ref.ref_ids.dtype)]),
                   negative=np.concatenate([ref.negative, np.zeros(m, bool)]))


def negative_veto(ref: ReferenceEmbedding, top_k: int, quantile: float) -> NegativeVeto:
    """The negative examples of `ref` as a veto, each with the `quantile` of its own held-out
    similarity (halves) as the least similarity of a patch of its kind."""
    banks, opens = [], []
    for i in np.unique(ref.ref_ids[ref.negative]):
        own = ref.negative & (ref.ref_ids == i)
        sims = held_out_fg_similarity(ref.bank[own], np.ones(int(own.sum()), np.int8),
                                      ref.pos_xy[own], ref.ref_ids[own], top_k).get(int(i))
        if sims is None or len(sims) < 10:
            continue
        banks.append(ref.bank[own].astype(np.float32))
        opens.append(float(np.quantile(sims, quantile)))
    return NegativeVeto(tuple(banks), tuple(opens),
                        ref.bank[ref.labels == 1].astype(np.float32), top_k)


def slide_decision(ref: ReferenceEmbedding, feats: np.ndarray, margin: np.ndarray,
                   cfg: MatchingConfig, seed: int, quantile: float
                   ) -> tuple[LinearDecision | None, dict[str, int]]:
    """The slide's classifier: fitted on the bank's labelled patches and the survey patches
    (`feats`, their `margin` against that bank) that are confidently target or not; None when a
    side has too few patches (tiles then fall back to the self-training of each tile).
    Negative examples are not in its fit (a linear rule would carry them to every tissue that
    shares a direction with them): they veto where they are nearer than the target examples."""
    pos, neg = confident(margin, ref.calibration.threshold, cfg)
    own = ~ref.negative
    x = np.concatenate([feats.astype(np.float32), ref.bank[own].astype(np.float32)])
    pos = np.concatenate([pos, ref.labels[own] == 1])
    neg = np.concatenate([neg, ref.labels[own] == 0])
    decision = fit_decision(x, pos, neg, ref.calibration.threshold, cfg, seed)
    if decision is not None and ref.negative.any():
        decision = replace(decision, veto=negative_veto(ref, cfg.top_k, quantile))
    n_survey = len(feats)
    return decision, {"survey_target": int(pos[:n_survey].sum()),
                      "survey_background": int(neg[:n_survey].sum()),
                      "bank_target": int(pos[n_survey:].sum()),
                      "bank_background": int(neg[n_survey:].sum()),
                      "fitted": decision is not None}
