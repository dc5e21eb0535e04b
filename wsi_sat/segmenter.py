"""The engine's entry point: models + config; encode the reference once, then segment any number
of images (encoder batches, then the per-image method of `wsi_sat.sat`, through its one door).

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
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from itertools import repeat
from typing import TypeVar

import numpy as np
import torch

from wsi_sat.config import Config, SatConfig
from wsi_sat.models.features import load_backbone
from wsi_sat.models.registry import get_spec
from wsi_sat.models.sam import Encoded, SamEngine
from wsi_sat.runtime.allocator import keep_freed_memory
from wsi_sat.runtime.device import select_device
from wsi_sat.runtime.lanes import lent_threads
from wsi_sat.runtime.prefetch import Prefetcher
from wsi_sat.runtime.threads import BlasLimiter, set_torch_threads
from wsi_sat.sat import (
    Backbone,
    Engine,
    Example,
    ReferenceEmbedding,
    SegmentResult,
    Workers,
    decided_maps,
    decided_maps_fit,
    decided_result,
    prepare_embedding,
    segment_image,
)

log = logging.getLogger(__name__)

__all__ = ["SegmentResult", "Segmenter"]

R = TypeVar("R")


class Segmenter:
    """Loaded models + config; stateless between images apart from the loaded weights.
    Thread-safe: lanes share one Segmenter (see wsi_sat.runtime.lanes)."""

    def __init__(self, engine: SamEngine, backbone: Backbone, config: Config,
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

    def tile_scale(self, tile_px: int) -> float:
        """Encoder px per working px for tiles of `tile_px`; a slide's reference is encoded at
        the same scale."""
        return float(self.engine.input_px) / tile_px

    # -- reference, once ----------------------------------------------------------------------
    def prepare_reference(self, references: list[Example],
                          names: list[str] | None = None, encode_scale: float | None = None,
                          negatives: list[Example] = (),
                          engine: Engine | None = None) -> ReferenceEmbedding:
        """Encode every reference (and its views) and negative example (image, mask of its
        non-target pixels), build the bank, self-calibrate.

        `encode_scale` (encoder px per image px) fixes the encoder scale, as whole slides do
        so that reference and tiles are seen at one scale; None = longest side to the input.
        `engine`: what encodes them (a slide run's view store over this engine)."""
        names = names or [f"reference {i}" for i in range(len(references))]
        with lent_threads(torch.get_num_threads(), "wsi-sat-sim") as workers:
            return prepare_embedding(engine or self.engine, self.backbone, references, names,
                                     self.sat, encode_scale=encode_scale,
                                     negatives=list(negatives), workers=workers)

    def blas_one_thread(self):
        """numpy's BLAS held to one thread while inside (lanes split the cores; reference-
        counted, so lanes enter and leave independently)."""
        return self._blas.one_thread()

    # -- targets ------------------------------------------------------------------------------
    def _encode(self, chunk: list[np.ndarray], scale: float | None,
                given: Iterator[Encoded | None] | None,
                keep: Callable[[int, Encoded], Encoded] | None, start: int) -> list[Encoded]:
        """The chunk's encoder outputs: those `given`, the rest encoded in one call and passed
        through `keep` (with their image's index) when given."""
        known = [next(given, None) for _ in chunk] if given is not None else [None] * len(chunk)
        todo = [i for i, e in enumerate(known) if e is None]
        fresh = self.engine.encode([chunk[i] for i in todo], scale) if todo else []
        for i, enc in zip(todo, fresh):
            known[i] = keep(start + i, enc) if keep is not None else enc
        return [e for e in known if e is not None]

    def segment(self, images: Iterable[np.ndarray], reference: ReferenceEmbedding, *,
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
        return self.segment_each(images, reference, _as_is, mpp=mpp, encode_scale=encode_scale,
                                 tissue=tissue, encoded=encoded)

    def segment_each(self, images: Iterable[np.ndarray], reference: ReferenceEmbedding,
                     finish: Callable[[int, SegmentResult], R], *, mpp: float | None = None,
                     encode_scale: float | None = None,
                     tissue: Iterable[np.ndarray] | None = None,
                     encoded: Iterable[Encoded | None] | None = None,
                     keep: Callable[[int, Encoded], Encoded] | None = None) -> list[R]:
        """`segment`, with `finish(i, result)` applied to the result of image i as soon as it
        is ready, in order of the images: on an accelerator on this lane's CPU threads while
        the device encodes the next batch (whole slides finish a tile there: its glass rule,
        polygons and label chunk), on a CPU in this thread. Returns what `finish` returns.
        `keep(i, encoding)` takes each fresh encoding of image i and returns the one to use
        (a slide's tile store keeps it and rounds it to the store's precision)."""
        masks = iter(tissue) if tissue is not None else repeat(None)
        given = iter(encoded) if encoded is not None else None
        on_device = self.engine.device.type != "cpu"
        threads = max(1, torch.get_num_threads())
        out: list[Future[R]] = []
        with Prefetcher(images, self.engine.encoder_batch,
                        self.config.runtime.prefetch_chunks) as reader, \
                self._blas.one_thread(), lent_threads(threads, "wsi-sat-sim") as workers, \
                _finisher(on_device, threads) as finisher:
            while True:
                t0 = time.perf_counter()
                chunk = reader.next_chunk()
                wait_s = time.perf_counter() - t0
                if not chunk:
                    break
                if on_device:  # the next chunk is read while the device encodes this one
                    reader.request()
                t0 = time.perf_counter()
                enc = self._encode(chunk, encode_scale, given, keep, len(out))
                stages = {"encode": (time.perf_counter() - t0) / len(chunk),
                          "read_wait": wait_s / len(chunk), "read": reader.read_s / len(chunk)}
                if not on_device:  # the encoder's threads had this lane's cores until now
                    reader.request()
                tissue_masks = [next(masks) for _ in chunk]
                if on_device and decided_maps_fit(enc, chunk, reference, self.backbone.name):
                    out += self._decided(chunk, enc, reference, stages, mpp, finisher,
                                         partial(_finish_decided, finish), len(out))
                else:
                    out += [finisher.submit(finish, len(out) + k, res) for k, res in
                            enumerate(self._per_image(chunk, enc, reference, stages, mpp,
                                                      tissue_masks, workers))]
            return [r.result() for r in out]

    def _per_image(self, chunk: list[np.ndarray], enc: list[Encoded],
                   reference: ReferenceEmbedding, stages: dict[str, float], mpp: float | None,
                   tissue: list[np.ndarray | None], workers: Workers) -> Iterator[SegmentResult]:
        """The method on each image of an encoded chunk, one after the other."""
        t0 = time.perf_counter()
        grids = self.backbone.grids(chunk, enc)
        features_s = (time.perf_counter() - t0) / len(chunk)
        for image, e, grid, tissue_mask in zip(chunk, enc, grids, tissue):
            timings: dict[str, float] = defaultdict(
                float, encode=stages["encode"], features=features_s,
                read_wait=stages["read_wait"], read=stages["read"])
            yield segment_image(self.engine, e, image, grid, reference, self.sat, mpp=mpp,
                                tissue=tissue_mask, timings=timings, workers=workers)

    def _decided(self, chunk: list[np.ndarray], enc: list[Encoded],
                 reference: ReferenceEmbedding, stages: dict[str, float], mpp: float | None,
                 finisher: Executor, finish: Callable[..., R], start: int) -> list[Future[R]]:
        """A chunk of same-sized tiles under a slide's decision: the map on the device, the
        clean-up and `finish` on the finisher's threads."""
        t0 = time.perf_counter()
        probs, patch = decided_maps(enc, chunk, reference, self.sat)
        stages = {**stages, "match": (time.perf_counter() - t0) / len(chunk)}
        return [finisher.submit(finish, start + k, p, patch, self.sat, mpp, stages)
                for k, p in enumerate(probs)]


def _as_is(index: int, result: SegmentResult) -> SegmentResult:
    return result


def _finish_decided(finish: Callable[[int, SegmentResult], R], index: int, prob: np.ndarray,
                    patch_px: int, cfg: SatConfig, mpp: float | None,
                    stages: dict[str, float]) -> R:
    return finish(index, decided_result(prob, patch_px, cfg, mpp, stages))


class _Inline(Executor):
    """Runs each call at once in the calling thread (a CPU lane finishes each tile right after
    its SAT); errors are raised at once."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done


def _finisher(on_device: bool, threads: int) -> Executor:
    """Where finished tiles are cleaned up and finished: on an accelerator this lane's CPU
    threads (while the device encodes the next batch), on a CPU this thread."""
    if on_device:
        return ThreadPoolExecutor(threads, thread_name_prefix="wsi-sat-cleanup")
    return _Inline()
