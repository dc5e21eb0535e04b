"""Transductive refinement: adapt the decision to each target's own feature distribution.

The reference→target margin carries the reference's stain and scale; a target's confident
patches (far above / below the threshold) are labelled by it, a linear classifier is fitted on
them in the target's own feature space, and its log-odds re-score every patch. Returned on the
margin's scale (centred on the same threshold), so every later step is unchanged.

Two classifiers: `lr`, an L2 logistic regression (default: best on the benchmark overall, and
clearly with SAM decoding on ultrasound and dermoscopy), and `lda`, a closed-form shrinkage linear
discriminant (a few ms instead of a few hundred; better on polyps, worse with SAM decoding).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from wsi_sat.config import MatchingConfig


@dataclass(frozen=True)
class NegativeVeto:
    """Negative examples act on their own kind only: a patch as like a negative example as the
    example's halves are like each other (its `open` threshold), and nearer to the negative
    examples than to the target ones, is not the target. Local by construction: a negative
    added changes only patches of its kind that are more like it than like the target."""

    negatives: tuple[np.ndarray, ...]  # each negative example's fused patch features
    open: tuple[float, ...]  # each one's least similarity of a patch of its kind
    positives: np.ndarray  # (P, D) the target examples
    top_k: int

    def lead(self, feats: np.ndarray) -> np.ndarray:
        """(N,) how much nearer the target examples are than the negative ones, where the patch
        is of a negative example's kind; +inf elsewhere."""
        sims = [_topk_mean(feats @ n.T, self.top_k) for n in self.negatives]
        kind = np.max([s - q for s, q in zip(sims, self.open)], axis=0)
        lead = _topk_mean(feats @ self.positives.T, self.top_k) - np.max(sims, axis=0)
        return np.where(kind >= 0, lead, np.inf)


def _topk_mean(sim: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, sim.shape[1]))
    return np.partition(sim, -k, axis=1)[:, -k:].mean(axis=1)


@dataclass(frozen=True)
class LinearDecision:
    """A linear classifier on fused patch features, on the margin's scale: margin(x) =
    threshold + (x . coef + intercept) / logit_scale, so "above the threshold" is "the
    classifier says target"; with a `veto`, never above threshold + the veto's lead."""

    coef: np.ndarray  # (D,)
    intercept: float
    threshold: float
    logit_scale: float
    veto: NegativeVeto | None = None

    def margin(self, feats: np.ndarray) -> np.ndarray:
        out = self.threshold + (feats @ self.coef + self.intercept) / self.logit_scale
        if self.veto is not None and self.veto.negatives:
            out = np.minimum(out, self.threshold + self.veto.lead(feats))
        return out.astype(np.float32)


def fit_decision(feats: np.ndarray, pos: np.ndarray, neg: np.ndarray, threshold: float,
                 cfg: MatchingConfig, seed: int = 0) -> LinearDecision | None:
    """The self-training classifier (`cfg.self_train_method`, class-balanced) fitted on the
    `pos` / `neg` rows of `feats`; None when a side has fewer than
    `cfg.self_train_min_patches`."""
    if pos.sum() < cfg.self_train_min_patches or neg.sum() < cfg.self_train_min_patches:
        return None
    if cfg.self_train_method == "lr":
        coef, intercept = _logistic(feats, pos, neg, cfg.self_train_c, cfg.self_train_max_iter,
                                    seed)
    else:
        coef, intercept = _lda(feats, pos, neg, cfg.self_train_shrinkage)
    return LinearDecision(coef, intercept, threshold, cfg.self_train_logit_scale)


def self_train(feats: np.ndarray, margin: np.ndarray, threshold: float, cfg: MatchingConfig,
               seed: int = 0, valid: np.ndarray | None = None) -> np.ndarray:
    """Refined margin (N,) for features (N, D); unchanged when a side has fewer than
    `cfg.self_train_min_patches` confident patches (margin beyond ±`self_train_margin`).

    `valid` (N,) bool restricts the training patches (tissue only: glass next to a tissue edge
    matches white lumens confidently and would teach the classifier that "white" is the
    target); every patch is still re-scored. The classifier's log-odds are put back on the
    margin's scale (`self_train_logit_scale` per margin unit)."""
    pos, neg = confident(margin, threshold, cfg, valid)
    decision = fit_decision(feats, pos, neg, threshold, cfg, seed)
    return margin if decision is None else decision.margin(feats)


def confident(margin: np.ndarray, threshold: float, cfg: MatchingConfig,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Patches confidently target / not target by their margin (beyond ±self_train_margin
    around the threshold), among `valid` ones when given."""
    pos = margin > threshold + cfg.self_train_margin
    neg = margin < threshold - cfg.self_train_margin
    if valid is not None:
        pos &= valid
        neg &= valid
    return pos, neg


def _logistic(feats: np.ndarray, pos: np.ndarray, neg: np.ndarray, c: float, max_iter: int,
              seed: int) -> tuple[np.ndarray, float]:
    x = np.concatenate([feats[pos], feats[neg]])
    y = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
    model = LogisticRegression(C=c, max_iter=max_iter, class_weight="balanced",
                               random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def _lda(feats: np.ndarray, pos: np.ndarray, neg: np.ndarray, shrinkage: float
         ) -> tuple[np.ndarray, float]:
    x = feats.astype(np.float64)
    m1, m0 = x[pos].mean(axis=0), x[neg].mean(axis=0)
    centred = np.concatenate([x[pos] - m1, x[neg] - m0])
    cov = centred.T @ centred / len(centred)
    cov += shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    w = np.linalg.solve(cov, m1 - m0)
    return w.astype(np.float32), float(-w @ (m1 + m0) / 2.0)  # balanced: no prior term
