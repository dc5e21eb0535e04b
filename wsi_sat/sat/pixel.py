"""Pixel refinement: a small random forest fitted on the reference's pixels.

Features per pixel: colour / stain channels, multi-scale intensity, edge and texture (Hessian)
features of the lightness channel, and the matching margin upsampled from the patch grid. It
resolves structures thinner than the encoder's 16 px patches (membranes, gland borders).
"""

from __future__ import annotations

import numpy as np
from joblib import parallel_config
from scipy.ndimage import gaussian_filter
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

from wsi_sat.config import PixelConfig
from wsi_sat.sat.patches import pixel_colour


def pixel_features(image: np.ndarray, margin_up: np.ndarray, sigmas_px: list[float]
                   ) -> np.ndarray:
    """(H, W, F) float32 features of an RGB image and its upsampled matching margin."""
    colour = pixel_colour(image)
    smin, smax = min(sigmas_px), max(sigmas_px)
    texture = multiscale_basic_features(
        colour[..., 0], intensity=True, edges=True, texture=True,
        sigma_min=smin, sigma_max=smax, num_sigma=len(sigmas_px), channel_axis=None,
    )
    smooth = [gaussian_filter(colour, sigma=(s, s, 0)) for s in (smin, smax)]
    return np.concatenate(
        [colour, *smooth, texture, margin_up[..., None]], axis=-1
    ).astype(np.float32)


def fit_pixel_model(features: list[np.ndarray], masks: list[np.ndarray], cfg: PixelConfig,
                    seed: int) -> RandomForestClassifier | None:
    """Fit on a class-balanced, seeded sample of reference pixels; None if a class is absent."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    per_image = max(1, cfg.samples // max(1, len(features)))
    for feat, mask in zip(features, masks):
        flat_f = feat.reshape(-1, feat.shape[-1])
        flat_m = mask.ravel()
        for cls in (True, False):
            idx = np.nonzero(flat_m == cls)[0]
            if len(idx) == 0:
                continue
            take = rng.choice(idx, min(len(idx), per_image // 2), replace=False)
            xs.append(flat_f[take])
            ys.append(np.full(len(take), cls))
    if not ys:
        return None
    y = np.concatenate(ys)
    if y.all() or not y.any():
        return None
    model = RandomForestClassifier(
        n_estimators=cfg.trees, max_depth=cfg.max_depth, min_samples_leaf=cfg.min_samples_leaf,
        n_jobs=-1, random_state=seed,
    )
    with parallel_config(backend="threading"):  # threads: also inside daemonic Dask workers
        model.fit(np.concatenate(xs), y)
    return model


def predict_pixels(model: RandomForestClassifier, features: np.ndarray) -> np.ndarray:
    """Foreground probability (H, W) from a fitted pixel model."""
    h, w, f = features.shape
    with parallel_config(backend="threading"):
        prob = model.predict_proba(features.reshape(-1, f))
    col = list(model.classes_).index(True)
    return prob[:, col].reshape(h, w).astype(np.float32)
