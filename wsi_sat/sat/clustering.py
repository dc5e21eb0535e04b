"""k-means with k-means++ seeding, as scipy's `kmeans2(x, k, minit="++", seed=seed)` computes
it, label for label (tested against it), in O(k·n·d) instead of O(k²·n·d).

scipy's seeding computes, for every new centre, the distance of every point to *all* centres
chosen so far; here each point keeps its distance to the nearest centre and only the newest
centre's distances are computed. The distances, the random draws (a `RandomState` seeded with
`seed`, as scipy's legacy `seed` argument makes) and so the centres are the same; Lloyd's
iterations are scipy's own. A slide survey's clustering (thousands of patches, k in the tens,
several restarts) is dominated by scipy's seeding otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.spatial.distance import cdist


def kmeans_pp_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, d) k-means++ seeds of `x` (n, d) float64."""
    rng = np.random.RandomState(seed)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.randint(0, x.shape[0], dtype="int64")]
    nearest = None
    for i in range(1, k):
        d2 = cdist(centres[i - 1 : i], x, metric="sqeuclidean")[0]
        nearest = d2 if nearest is None else np.minimum(nearest, d2)
        cumulative = (nearest / nearest.sum()).cumsum()
        centres[i] = x[int(np.searchsorted(cumulative, rng.uniform()))]
    return centres


def kmeans_labels(x: np.ndarray, k: int, seed: int, iterations: int = 10) -> np.ndarray:
    """(n,) cluster of each row of `x` after `iterations` of Lloyd's algorithm from k-means++
    seeds (empty clusters keep their centre, as scipy's `missing="warn"`, without the
    warning)."""
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        _, labels = kmeans2(x, kmeans_pp_centres(x, k, seed), iter=iterations, minit="matrix")
    return labels
