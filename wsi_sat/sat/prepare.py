"""The reference, once: its views are encoded, pooled into the labelled bank and the method
self-calibrates on them. The caller passes the loaded models (no I/O here)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wsi_sat.config import SatConfig
from wsi_sat.errors import ReferenceError
from wsi_sat.sat.calibrate import calibrate
from wsi_sat.sat.engine import ONE_THREAD, Backbone, Engine, Workers
from wsi_sat.sat.instances import reference_objects
from wsi_sat.sat.reference import (
    ReferenceEmbedding,
    ReferenceView,
    build_bank,
    make_view,
    validate_negative_mask,
    validate_reference_mask,
)
from wsi_sat.sat.views import standard_views

Example = tuple[np.ndarray, np.ndarray]
"""An image and its target mask (a negative example's: its non-target pixels)."""


def encode_views(engine: Engine, backbone: Backbone, references: list[Example],
                 names: list[str], cfg: SatConfig, encode_scale: float | None = None,
                 negatives: list[Example] = ()) -> list[ReferenceView]:
    """Every reference and (with `sat.reference.augment`) its flipped / rotated / rescaled
    views, encoded one reference per encoder call; then every negative example (its mask marks
    the non-target pixels) with the same views."""
    views: list[ReferenceView] = []
    items = [(ex, name, False) for ex, name in zip(references, names)]
    items += [(ex, f"negative {j}", True) for j, ex in enumerate(negatives)]
    for ref_id, (example, name, negative) in enumerate(items):
        image, mask = example
        mask = mask if mask.dtype == bool else mask > 0  # instance labels: their objects
        (validate_negative_mask if negative else validate_reference_mask)(
            mask, image.shape[:2], name)
        specs = standard_views(mask.shape, cfg.reference.augment, cfg.reference.view_scale)
        images = [v.apply(image) for v in specs]
        masks = [v.apply(mask, nearest=True) for v in specs]
        encoded = engine.encode(images, encode_scale)
        grids = backbone.grids(images, encoded)
        views += [make_view(ref_id, v, img, m, g, e, negative)
                  for v, img, m, g, e in zip(specs, images, masks, grids, encoded)]
    return views


def prepare_embedding(engine: Engine, backbone: Backbone, references: list[Example],
                      names: list[str], cfg: SatConfig, *, encode_scale: float | None = None,
                      negatives: list[Example] = (),
                      workers: Workers = ONE_THREAD) -> ReferenceEmbedding:
    """Encode every reference (and its views) and negative example, build the bank,
    self-calibrate (on the caller's `workers`).

    `encode_scale` (encoder px per image px) fixes the encoder scale, as whole slides do so
    that reference and tiles are seen at one scale; None = longest side to the input."""
    views = encode_views(engine, backbone, references, names, cfg, encode_scale, negatives)
    bank = build_bank(views, cfg.reference, cfg.matching.colour_weight,
                      cfg.calibration.default_threshold, cfg.seed)
    originals = [v for v in views if v.view.is_identity and not v.negative]
    bank = replace(bank, objects=reference_objects(
        [np.asarray(references[v.ref_id][1]) for v in originals],
        [v.encoded.scale for v in originals], tuple(cfg.decode.object_quantiles)))
    if not (bank.labels == 1).any() or not (bank.labels == 0).any():
        raise ReferenceError(
            "the reference mask leaves no whole patch of foreground or of background; "
            "use a larger reference region or lower sat.reference.fg_min_fraction"
        )
    return calibrate(views, bank, engine, cfg, workers)
