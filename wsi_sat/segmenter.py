"""The engine's entry point: models + config; encode the reference once, then segment any number
of images (encoder batches, then the per-image method of `wsi_sat.sat`).

    seg = Segmenter.from_config(config)              # models load once (per worker)
    ref = seg.prepare_reference([(image, mask)])     # encode + bank + self-calibration, once
    results = seg.segment([img1, img2], ref)         # batched encoder, per-image SAT

Images are RGB uint8 (H, W, 3) arrays; results are at each image's original size. For whole
slides and file inputs, see `wsi_sat.api`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

import numpy as np
import torch

from wsi_sat.config import Config, SatConfig
from wsi_sat.models.features import FeatureBackbone, load_backbone
from wsi_sat.models.registry import get_spec
from wsi_sat.models.sam import Encoded, SamEngine
from wsi_sat.runtime.allocator import keep_freed_memory
from wsi_sat.runtime.device import select_device
from wsi_sat.runtime.prefetch import Prefetcher
from wsi_sat.runtime.threads import BlasLimiter, set_torch_threads
from wsi_sat.sat.prepare import prepare_embedding
from wsi_sat.sat.reference import ReferenceEmbedding
from wsi_sat.sat.segment import (
    SegmentResult,
    decided_maps_fit,
    decided_probabilities,
    decided_result,
    device_patch_px,
    segment_image,
)

log = logging.getLogger(__name__)

__all__ = ["SegmentResult", "Segmenter"]

R = TypeVar("R")


class Segmenter:
    """Loaded models + config; stateless between images apart from the loaded weights.
    Thread-safe: lanes share one Segmenter (see wsi_sat.runtime.lanes)."""

    def __init__(self, engine: SamEngine, backbone: FeatureBackbone, config: Config,
                 blas: BlasLimiter | None = None) -> None:
        self.engine = engine
        self.backbone = backbone
        self.config = config
        self._blas = blas or BlasLimiter()

    @property
    def sat(self) -> SatConfig:
        return self.config.sat

    @classmethod
    def from_config(cls, config: Config) -> Segmenter:
        """Load the models of `config.models` on `config.runtime`'s device."""
        if config.runtime.keep_freed_memory:
            keep_freed_memory()  # process-wide; before the models allocate anything
        set_torch_threads(config.runtime.threads)
        device = select_device(config.runtime.device)
        sam_cfg, feat_cfg = config.models.sam, config.models.features
        engine = SamEngine(get_spec(sam_cfg.name), sam_cfg.checkpoint, device,
                           config.runtime.precision, config.runtime.encoder_batch,
                           compile_encoder=config.runtime.compile_encoder)
        backbone = load_backbone(get_spec(feat_cfg.name), feat_cfg.checkpoint, device,
                                 feat_cfg.input_px, engine.input_px, feat_cfg.download)
        return cls(engine, backbone, config)

    def with_config(self, config: Config) -> Segmenter:
        """The same loaded models under another config (its `models` section must be the one
        these models were loaded for)."""
        if config.models != self.config.models:
            raise ValueError("with_config: the models section differs; load the models anew")
        return Segmenter(self.engine, self.backbone, config, self._blas)

    # -- reference, once ----------------------------------------------------------------------
    def prepare_reference(self, references: list[tuple[np.ndarray, np.ndarray]],
                          names: list[str] | None = None, encode_scale: float | None = None,
                          negatives: list[tuple[np.ndarray, np.ndarray]] = ()
                          ) -> ReferenceEmbedding:
        """Encode every reference (and its views) and negative example (image, mask of its
        non-target pixels), build the bank, self-calibrate.

        `encode_scale` (encoder px per image px) fixes the encoder scale, as whole slides do
        so that reference and tiles are seen at one scale; None = longest side to the input."""
        names = names or [f"reference {i}" for i in range(len(references))]
        return prepare_embedding(self.engine, self.backbone, references, names, self.sat,
                                 encode_scale, list(negatives))

    def blas_one_thread(self):
        """numpy's BLAS held to one thread while inside (lanes split the cores; reference-
        counted, so lanes enter and leave independently)."""
        return self._blas.one_thread()

    # -- targets ------------------------------------------------------------------------------
    def _encode(self, chunk: list[np.ndarray], scale: float | None,
                given: Iterator[Encoded | None] | None) -> list[Encoded]:
        """The chunk's encoder outputs: those `given`, the rest encoded in one call."""
        known = [next(given, None) for _ in chunk] if given is not None else [None] * len(chunk)
        todo = [img for img, e in zip(chunk, known) if e is None]
        fresh = iter(self.engine.encode(todo, scale) if todo else [])
        return [e if e is not None else next(fresh) for e in known]

    def segment(self, images: Iterable[np.ndarray], reference: ReferenceEmbedding,
                mpp: float | None = None, encode_scale: float | None = None,
                tissue: Iterable[np.ndarray] | None = None,
                encoded: Iterable[Encoded | None] | None = None) -> list[SegmentResult]:
        """Segment images: encoder calls of `encoder_batch` images, then SAT per image.

        `images` may be a lazy iterable (whole slides pass a generator that reads tiles): it is
        consumed one encoder batch at a time by one background thread, which reads the next
        batch while this one is matched and decoded — on a CPU after the encoder call (the
        encoder's threads take this lane's cores; SAT is mostly single-threaded), on a GPU
        before it (reading overlaps the encoder too). `tissue` (one (H, W) bool mask per
        image, whole slides) limits the per-image self-training to patches that are mostly
        tissue; predictions are not masked here. `mpp` is the images' pixel size (µm/px).
        `encoded` (one per image, None where it must be encoded) gives encoder outputs computed
        before (a slide's survey tiles), which are not encoded again."""
        return self.segment_each(images, reference, _as_is, mpp, encode_scale, tissue, encoded)

    def segment_each(self, images: Iterable[np.ndarray], reference: ReferenceEmbedding,
                     finish: Callable[[int, SegmentResult], R], mpp: float | None = None,
                     encode_scale: float | None = None,
                     tissue: Iterable[np.ndarray] | None = None,
                     encoded: Iterable[Encoded | None] | None = None) -> list[R]:
        """`segment`, with `finish(i, result)` applied to the result of image i as soon as it
        is ready, in order of the images: on an accelerator on this lane's CPU threads while
        the device encodes the next batch (whole slides finish a tile there: its glass rule,
        polygons and label chunk), on a CPU in this thread. Returns what `finish` returns."""
        masks = iter(tissue) if tissue is not None else None
        given = iter(encoded) if encoded is not None else None
        early = self.engine.device.type != "cpu"
        out: list[R | Future[R]] = []
        # on an accelerator, decided maps come back as probabilities; their clean-up and the
        # finishing run on this lane's CPU threads while the device encodes the next batch
        pool = ThreadPoolExecutor(max(1, torch.get_num_threads()),
                                  thread_name_prefix="wsi-sat-cleanup") if early else None
        with Prefetcher(images, self.engine.encoder_batch,
                        self.config.runtime.prefetch_chunks) as reader, \
                self._blas.one_thread(), \
                pool or nullcontext():
            while True:
                t0 = time.perf_counter()
                chunk = reader.next_chunk()
                t_wait = time.perf_counter() - t0
                if not chunk:
                    break
                if early:
                    reader.request()
                t0 = time.perf_counter()
                encoded = self._encode(chunk, encode_scale, given)
                t_enc = (time.perf_counter() - t0) / len(chunk)
                if not early:
                    reader.request()
                # on an accelerator the map of a slide's decision is computed there, batched; on a
                # CPU the per-image path is faster (OpenCV colour: 38 vs 115 ms per 1024² tile)
                if pool is not None and decided_maps_fit(encoded, chunk, reference,
                                                         self.backbone.name):
                    if masks is not None:
                        for _ in chunk:
                            next(masks)  # the slide's decision needs no tissue mask
                    t0 = time.perf_counter()
                    probs = decided_probabilities(encoded, chunk, reference, self.sat)
                    stages = {"encode": t_enc, "read_wait": t_wait / len(chunk),
                              "read": reader.read_s / len(chunk),
                              "match": (time.perf_counter() - t0) / len(chunk)}
                    patch = device_patch_px(encoded[0]) or 16
                    out += [pool.submit(_finish_decided, finish, len(out) + k, p, patch,
                                        self.sat, mpp, stages) for k, p in enumerate(probs)]
                    continue
                grids = self.backbone.grids(chunk, encoded)
                t_feat = (time.perf_counter() - t0) / len(chunk) - t_enc
                for image, enc, grid in zip(chunk, encoded, grids):
                    timings: dict[str, float] = defaultdict(
                        float, encode=t_enc, features=t_feat, read_wait=t_wait / len(chunk),
                        read=reader.read_s / len(chunk))
                    tissue_mask = next(masks) if masks is not None else None
                    res = segment_image(self.engine, enc, image, grid, reference, self.sat,
                                        mpp, tissue_mask, timings)
                    out.append(pool.submit(finish, len(out), res) if pool is not None
                               else finish(len(out), res))
            return [r.result() if isinstance(r, Future) else r for r in out]


def _as_is(index: int, result: SegmentResult) -> SegmentResult:
    return result


def _finish_decided(finish: Callable[[int, SegmentResult], R], index: int, prob: np.ndarray,
                    patch_px: int, cfg: SatConfig, mpp: float | None,
                    stages: dict[str, float]) -> R:
    return finish(index, decided_result(prob, patch_px, cfg, mpp, stages))
