"""The engine's public API: encode the reference once, then segment any number of images.

    seg = Segmenter.from_config(config)              # models load once (per worker)
    ref = seg.prepare_reference([(image, mask)])     # encode + bank + self-calibration, once
    results = seg.segment([img1, img2], ref)         # batched encoder, per-image SAT

Images are RGB uint8 (H, W, 3) arrays; results are at each image's original size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from wsi_sat.allocator import keep_freed_memory
from wsi_sat.config import Config, SatConfig
from wsi_sat.device import select_device
from wsi_sat.errors import ReferenceError
from wsi_sat.models.features import FeatureBackbone, load_backbone
from wsi_sat.models.registry import get_spec
from wsi_sat.models.sam import SamEngine
from wsi_sat.sat.calibrate import calibrate
from wsi_sat.sat.matching import match
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.postprocess import clean_labels, clean_mask
from wsi_sat.sat.predict import Prediction, predict, refine_match
from wsi_sat.sat.reference import (
    ReferenceEmbedding,
    build_bank,
    make_view,
    validate_reference_mask,
)
from wsi_sat.sat.views import standard_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentResult:
    mask: np.ndarray  # (H, W) bool at the image's original size
    labels: np.ndarray | None  # instance labels (instances mode)
    prob: np.ndarray | None  # (H, W) foreground probability of the matching map (scores)
    mode: str
    n_positive: int
    n_negative: int
    timings_s: dict[str, float] = field(default_factory=dict)


def _take(source: Iterator[np.ndarray], n: int) -> list[np.ndarray]:
    return list(islice(source, n))


class Segmenter:
    """Models + config; stateless between images apart from the loaded weights."""

    def __init__(self, engine: SamEngine, backbone: FeatureBackbone, config: Config) -> None:
        self.engine = engine
        self.backbone = backbone
        self.config = config
        # the per-image SAT makes many small BLAS calls (self-training's logistic fit, the
        # similarity blocks); numpy's / scipy's multi-threaded OpenBLAS loses up to 5x on
        # them to thread hand-offs against torch's and OpenCV's pools, so it runs on 1 thread
        # (measured: self-training 80 -> 16 ms, all of SAT 440 -> 270 ms per 1024-px tile)
        self._blas = ThreadpoolController()
        self._blas_lock = threading.Lock()
        self._blas_users = 0
        self._blas_limiter: Any = None

    @contextmanager
    def _one_blas_thread(self) -> Iterator[None]:
        """numpy's BLAS on one thread while any lane is inside `segment` (the limit is
        process-wide: applied by the first lane in, restored by the last one out)."""
        with self._blas_lock:
            if self._blas_users == 0:
                self._blas_limiter = self._blas.limit(limits=1, user_api="blas")
            self._blas_users += 1
        try:
            yield
        finally:
            with self._blas_lock:
                self._blas_users -= 1
                if self._blas_users == 0:
                    self._blas_limiter.restore_original_limits()
                    self._blas_limiter = None

    @property
    def sat(self) -> SatConfig:
        return self.config.sat

    @classmethod
    def from_config(cls, config: Config) -> Segmenter:
        if config.runtime.keep_freed_memory:
            keep_freed_memory()  # process-wide; before the models allocate anything
        device = select_device(config.runtime.device, config.runtime.threads)
        sam_cfg, feat_cfg = config.models.sam, config.models.features
        engine = SamEngine(get_spec(sam_cfg.name), sam_cfg.checkpoint, device,
                           config.runtime.precision, config.runtime.encoder_batch,
                           compile_encoder=config.runtime.compile_encoder)
        backbone = load_backbone(get_spec(feat_cfg.name), feat_cfg.checkpoint, device,
                                 feat_cfg.input_px)
        return cls(engine, backbone, config)

    # -- reference, once ----------------------------------------------------------------------
    def prepare_reference(self, references: list[tuple[np.ndarray, np.ndarray]],
                          names: list[str] | None = None, encode_scale: float | None = None
                          ) -> ReferenceEmbedding:
        """Encode every reference (and its views), build the bank, self-calibrate.

        `encode_scale` (encoder px per image px) fixes the encoder scale, as whole slides do
        so that reference and tiles are seen at one scale; None = longest side to the input."""
        names = names or [f"reference {i}" for i in range(len(references))]
        cfg = self.sat
        views = []
        for ref_id, ((image, mask), name) in enumerate(zip(references, names)):
            validate_reference_mask(mask, image.shape[:2], name)
            specs = standard_views(mask.shape, cfg.reference.augment)
            images = [v.apply(image) for v in specs]
            masks = [v.apply(mask, nearest=True) for v in specs]
            encoded = self.engine.encode(images, encode_scale)
            grids = self.backbone.grids(images, encoded)
            views += [
                make_view(ref_id, v, img, m, g, e)
                for v, img, m, g, e in zip(specs, images, masks, grids, encoded)
            ]
        bank = build_bank(views, cfg.reference, cfg.matching.colour_weight,
                          cfg.calibration.default_threshold, cfg.seed)
        if not (bank.labels == 1).any() or not (bank.labels == 0).any():
            raise ReferenceError(
                "the reference mask leaves no whole patch of foreground or of background; "
                "use a larger reference region or lower sat.reference.fg_min_fraction"
            )
        return calibrate(views, bank, self.engine, self.sat)

    # -- targets ------------------------------------------------------------------------------
    def segment(self, images: Iterable[np.ndarray], reference: ReferenceEmbedding,
                mpp: float | None = None, encode_scale: float | None = None,
                tissue: Iterable[np.ndarray] | None = None) -> list[SegmentResult]:
        """Segment images: encoder calls of `encoder_batch` images, then SAT per image.

        `images` may be a lazy iterable (whole slides pass a generator that reads tiles): it is
        consumed one encoder batch at a time by one background thread, which reads the next
        batch while this one is matched and decoded — on a CPU after the encoder call (the
        encoder's threads take this lane's cores; SAT is mostly single-threaded), on a GPU
        before it (reading overlaps the encoder too). Whole slides run several such calls at
        once, one per lane (see wsi_sat.runtime); the call is thread-safe. `tissue` (one
        (H, W) bool mask per image, whole slides) limits the per-image self-training to
        patches that are mostly tissue; predictions are not masked here."""
        step = max(1, self.engine.encoder_batch)
        source = iter(images)
        masks = iter(tissue) if tissue is not None else None
        early = self.engine.device.type != "cpu"
        out: list[SegmentResult] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsi-sat-read") as reader, \
                self._one_blas_thread():
            pending: Future[list[np.ndarray]] | None = reader.submit(_take, source, step)
            while pending is not None:
                t0 = time.perf_counter()
                chunk = pending.result()
                t_wait = time.perf_counter() - t0
                pending = None
                if not chunk:
                    break
                if early:
                    pending = reader.submit(_take, source, step)
                t0 = time.perf_counter()
                encoded = self.engine.encode(chunk, encode_scale)
                t_enc = (time.perf_counter() - t0) / len(chunk)
                if not early:
                    pending = reader.submit(_take, source, step)
                grids = self.backbone.grids(chunk, encoded)
                t_feat = (time.perf_counter() - t0) / len(chunk) - t_enc
                for image, enc, grid in zip(chunk, encoded, grids):
                    timings: dict[str, float] = defaultdict(
                        float, encode=t_enc, features=t_feat, read_wait=t_wait / len(chunk))
                    tissue_mask = next(masks) if masks is not None else None
                    out.append(self._segment_one(image, enc, grid, reference, mpp, timings,
                                                 tissue_mask))
        return out

    def _segment_one(self, image, enc, grid, reference, mpp, timings, tissue=None
                     ) -> SegmentResult:
        cfg = self.sat
        cal = reference.calibration
        t = time.perf_counter()
        colour = patch_colour(image, grid.grid_hw, grid.patch_hw)
        feats = reference.features(grid, colour)
        # map mode decodes the margin alone: the votes (prompts only) are not computed
        result = match(feats, reference.bank, reference.labels, cfg.matching.top_k,
                       votes=cal.mode != "map")
        valid = None
        if tissue is not None:
            valid = mask_fraction(tissue, grid.grid_hw, grid.patch_hw).ravel() >= 0.5
        result = refine_match(result, feats, cal.threshold, cfg, valid)
        timings["match"] = time.perf_counter() - t
        t = time.perf_counter()
        pred: Prediction = predict(
            self.engine, enc, image, grid, feats, result, cal.threshold, cal.mode,
            reference.pixel_model, self.config.sat,
        )
        timings["decode"] = time.perf_counter() - t
        t = time.perf_counter()
        mask = clean_mask(pred.mask, cfg.postprocess, mpp)
        labels = None
        if pred.labels is not None:
            labels = clean_labels(pred.labels * mask, cfg.postprocess, mpp)
            mask = labels > 0
        timings["postprocess"] = time.perf_counter() - t
        n_pos = 0 if pred.prompts is None else len(pred.prompts.pos_xy)
        n_neg = 0 if pred.prompts is None else len(pred.prompts.neg_xy)
        return SegmentResult(mask, labels, pred.map_prob, cal.mode, n_pos, n_neg, dict(timings))
