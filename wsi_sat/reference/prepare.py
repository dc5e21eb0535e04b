"""The reference as whole slides use it: encoded at the tiles' scale (cut into tile windows when
it is larger than a tile) and, with coarse-to-fine on, once more at the coarse magnification.
Prepared once per run and broadcast to every worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat.encodings import ViewEncodings
from wsi_sat.errors import WsiSatError
from wsi_sat.reference.images import Reference, rescale_reference
from wsi_sat.reference.request import ReferenceSet
from wsi_sat.runtime.progress import Progress
from wsi_sat.sat import ReferenceEmbedding, standard_views
from wsi_sat.segmenter import Segmenter
from wsi_sat.signature import encoder_identity, sha256_json
from wsi_sat.writers.provenance import array_hash, model_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideReference:
    """What every tile is matched against.

    embedding: the reference at the tiles' encoder scale; coarse: the same at
    `wsi.coarse_downsample` (None when coarse-to-fine is off or the reference is too small);
    mpp: the working resolution it was prepared at (µm/px; None = it is taken to be at each
    slide's own level-0 resolution); info: provenance for run.json."""

    embedding: ReferenceEmbedding
    coarse: ReferenceEmbedding | None = None
    mpp: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def feature_input_mpp(segmenter: Segmenter, encode_scale: float,
                      mpp: float | None) -> float | None:
    """µm/px of what the feature model sees (tiles and reference alike), with a warning when
    it is far from the scale a foundation model was trained at."""
    backbone = segmenter.backbone
    input_px = getattr(backbone, "input_px", None)
    if mpp is None or input_px is None:
        return None
    seen = mpp * segmenter.engine.input_px / (encode_scale * input_px)
    trained = getattr(backbone, "input_mpp", None)
    if trained and not 1 / 1.5 <= seen / trained <= 1.5:
        log.warning("%s was trained at %.2f µm/px but sees %.2f µm/px here (working mpp %.3g, "
                    "tile %d px): --mpp %.2f --tile-px %d gives it its own scale",
                    backbone.name, trained, seen, mpp, segmenter.engine.input_px / encode_scale,
                    trained, segmenter.engine.input_px)
    return seen


def reference_windows(image: np.ndarray, mask: np.ndarray, tile_px: int,
                      negative: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """A reference larger than a tile, cut into tile-sized windows that hold both classes (a
    negative example: windows that hold some of its mask), so it is encoded at the tiles'
    scale; one that fits is returned whole."""
    h, w = mask.shape
    if h <= tile_px and w <= tile_px:
        return [(image, mask)]
    ys = np.unique(np.linspace(0, max(0, h - tile_px), max(1, -(-h // tile_px))).astype(int))
    xs = np.unique(np.linspace(0, max(0, w - tile_px), max(1, -(-w // tile_px))).astype(int))
    out = []
    for y in ys:
        for x in xs:
            win = np.s_[y : y + tile_px, x : x + tile_px]
            m = mask[win]  # a mask, or instance labels
            if (m.any() if negative else 0.0 < (m > 0).mean() < 1.0):
                out.append((image[win], m))
    return out or [(image, mask)]


def reference_info(references: list[Reference], mpp: float | None) -> dict[str, Any]:
    """Provenance of the references for run.json (names, mask sources, pixel hash, mpp)."""
    return {
        "names": [r.name for r in references],
        "mask_sources": [r.mask_source for r in references],
        "sha256": array_hash(*[a for r in references for a in (r.image, r.mask, r.objects)
                               if a is not None]),
        "mpp": mpp,
    }


def prepare_slide_reference(segmenter: Segmenter, refs: ReferenceSet,
                            views_dir: Path | None = None) -> SlideReference:
    """Encode and calibrate the references and negatives of `refs` (already at the working
    resolution `refs.mpp`) for tiles and, with coarse-to-fine on, for the coarse pass (map
    mode: it only matches). Their views' encodings are kept in `views_dir` (None: not kept)
    and read back from it when a rerun shows the same pixels again."""
    wcfg = segmenter.config.wsi
    views = view_encodings(segmenter, views_dir)
    scale = segmenter.tile_scale(wcfg.tile_px)
    pairs = [(ex, r.name) for r in refs.references
             for ex in reference_windows(*r.example, wcfg.tile_px)]
    negative_pairs = [ex for n in refs.negatives
                      for ex in reference_windows(n.image, n.mask, wcfg.tile_px, negative=True)]
    rcfg = segmenter.config.sat.reference
    n_views = sum(len(standard_views(mask.shape[:2], rcfg.augment, rcfg.view_scale))
                  for _, mask in [p for p, _ in pairs] + negative_pairs)
    with Progress("reference views", n_views, "view") as views.progress:
        embedding = segmenter.prepare_reference([p for p, _ in pairs], [n for _, n in pairs],
                                                encode_scale=scale, negatives=negative_pairs,
                                                engine=views)
    views.progress = None
    info = reference_info(refs.references, refs.source_mpp)
    info["features_mpp"] = feature_input_mpp(segmenter, scale, refs.mpp)
    if refs.negatives:
        info["negatives"] = reference_info(refs.negatives, refs.mpp)
    coarse = (_coarse_reference(segmenter, refs, scale, views)
              if wcfg.coarse_downsample > 1 else None)
    info["views"] = {"encoded": views.encoded, "reused": views.reused}
    log.info("reference: %d views encoded, %d read back", views.encoded, views.reused)
    return SlideReference(embedding, coarse, refs.mpp, info)


def view_encodings(segmenter: Segmenter, folder: Path | None) -> ViewEncodings:
    """The segmenter's engine with the reference views' encodings kept in `folder`."""
    wcfg, engine = segmenter.config.wsi, segmenter.engine
    key = sha256_json(encoder_identity(model_info(segmenter), engine.input_px,
                                       segmenter.config.runtime.precision))
    return ViewEncodings(engine, folder, wcfg.encodings_dtype, key)


def _coarse_reference(segmenter: Segmenter, refs: ReferenceSet, scale: float,
                      views: ViewEncodings) -> ReferenceEmbedding | None:
    """The reference at `wsi.coarse_downsample` (map mode), or None when it is too small
    there."""
    d = segmenter.config.wsi.coarse_downsample
    try:
        small = [rescale_reference(r, 1.0 / d) for r in refs.references]
        small_neg = [rescale_reference(n, 1.0 / d, negative=True) for n in refs.negatives]
        coarse = segmenter.prepare_reference([(r.image, r.mask) for r in small],
                                             [r.name for r in small], encode_scale=scale,
                                             negatives=[(n.image, n.mask) for n in small_neg],
                                             engine=views)
    except WsiSatError as err:
        log.warning("coarse-to-fine off: the reference is too small at 1/%d (%s)", d, err)
        return None
    return coarse.with_calibration(replace(coarse.calibration, mode="map", use_pixel=False),
                                   None)
