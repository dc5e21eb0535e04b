"""Transductive refinement: adapt the decision to each target's own feature distribution.

The reference→target margin carries the reference's stain and scale; a target's confident
patches (far above / below the threshold) are labelled by it, a logistic regression is fitted on
them in the target's own feature space, and its decision re-scores every patch. Returned on the
margin's scale (centred on the same threshold), so every later step is unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

_MIN_PATCHES = 5
_SCALE = 50.0  # decision-function units per margin unit (margins live in about ±0.1)


def self_train(feats: np.ndarray, margin: np.ndarray, threshold: float, confident: float,
               seed: int = 0) -> np.ndarray:
    """Refined margin (N,) for features (N, D); unchanged when a side has too few patches."""
    pos = margin > threshold + confident
    neg = margin < threshold - confident
    if pos.sum() < _MIN_PATCHES or neg.sum() < _MIN_PATCHES:
        return margin
    x = np.concatenate([feats[pos], feats[neg]])
    y = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
    model = LogisticRegression(C=1.0, max_iter=200, class_weight="balanced", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return (threshold + model.decision_function(feats) / _SCALE).astype(np.float32)
