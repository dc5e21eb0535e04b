"""The typed API, for slides and images: what the CLI calls, and what a notebook calls (no
globals; models load once and are passed along).

    from wsi_sat import api
    seg = api.load_segmenter(api.load_config(None, ["runtime.device=cpu"]))  # models, once
    request = api.ReferenceRequest(images=["ref.png"], reference_mpp=0.5)
    ref = api.prepare_reference(seg, request)                               # once per run
    summary = api.run_slide("slide.svs", ref, seg, out_dir="results")       # per slide
    for r in api.segment_images(["a.png"], api.prepare_image_reference(seg, request), seg,
                                out_dir="masks"):
        print(r.name, r.foreground)

Every way a reference arrives is one `ReferenceRequest` (`wsi_sat.reference`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat.config import Config, load_config
from wsi_sat.encodings import encodings_root
from wsi_sat.errors import ConfigError, InputImageError
from wsi_sat.io.image import read_image
from wsi_sat.io.slide import SlideSource
from wsi_sat.pipeline import RunOptions, SlideSummary
from wsi_sat.pipeline import run_slide as _run_slide
from wsi_sat.reference import (
    Reference,
    ReferenceRequest,
    ReferenceSet,
    SlideReference,
    prepare_slide_reference,
    read_references,
)
from wsi_sat.sat import ReferenceEmbedding
from wsi_sat.segmenter import Segmenter, SegmentResult
from wsi_sat.writers.mask_png import write_labels_png, write_mask_png
from wsi_sat.writers.tables import folder_rows, slide_row, write_summary

__all__ = ["Config", "ImageResult", "Reference", "ReferenceRequest", "ReferenceSet",
           "SegmentResult", "Segmenter", "SlideReference", "SlideSource", "SlideSummary",
           "load_config",
           "load_prepared_reference", "load_segmenter", "prepare_image_reference",
           "prepare_reference", "read_reference_set", "run_slide", "run_slides",
           "save_prepared_reference", "segment_images"]


def load_segmenter(config: Config | None = None) -> Segmenter:
    """Load the models of `config` (default config when None) once."""
    return Segmenter.from_config(config or load_config())


def read_reference_set(request: ReferenceRequest, config: Config) -> ReferenceSet:
    """Read, check and rescale the references `request` names (no model needed: bad input fails
    before models load)."""
    return read_references(request, config.wsi.reference_margin)


def _reference_set(segmenter: Segmenter, references: ReferenceRequest | ReferenceSet
                   ) -> ReferenceSet:
    if isinstance(references, ReferenceSet):
        return references
    return read_reference_set(references, segmenter.config)


def prepare_reference(segmenter: Segmenter, references: ReferenceRequest | ReferenceSet, *,
                      out_dir: str | Path | None = None) -> SlideReference:
    """The reference of a whole-slide run, encoded once at the tiles' scale. With `out_dir`
    (the run's output folder) its views' encodings are kept there for reruns
    (`wsi.keep_encodings`, `wsi.encodings_dir`): a rerun encodes only new examples."""
    root = encodings_root(segmenter.config.wsi, Path(out_dir)) if out_dir is not None else None
    return prepare_slide_reference(segmenter, _reference_set(segmenter, references),
                                   root / "reference" if root is not None else None)


def prepare_image_reference(segmenter: Segmenter, references: ReferenceRequest | ReferenceSet
                            ) -> ReferenceEmbedding:
    """The reference of `segment_images`, encoded once with each image's longest side at the
    encoder's input (images are not tiled)."""
    refs = _reference_set(segmenter, references)
    return segmenter.prepare_reference([r.example for r in refs.references],
                                       [r.name for r in refs.references],
                                       negatives=[(n.image, n.mask) for n in refs.negatives])


@dataclass(frozen=True)
class ImageResult:
    """One image of `segment_images`: its result (None when it could not be read: `error`
    says why), the mask file written (when `out_dir` was given) and the seconds it took."""

    name: str
    result: SegmentResult | None
    mask_path: Path | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def foreground(self) -> float:
        return float(self.result.mask.mean()) if self.result is not None else 0.0


def segment_images(images: Sequence[str | Path | np.ndarray], reference: ReferenceEmbedding,
                   segmenter: Segmenter, *, mpp: float | None = None,
                   out_dir: str | Path | None = None) -> Iterator[ImageResult]:
    """Segment each image (files or RGB arrays) like `reference`, one after the other; with
    `out_dir`, each mask is written as `<stem>.png` (0/255, the image's size). An image that
    cannot be read gives a result with its `error`; the others go on. In an instances mode the
    objects' labels are written beside each mask as `<stem>.labels.png` (16-bit ids)."""
    for i, item in enumerate(images):
        name = Path(item).stem if isinstance(item, (str, Path)) else f"image {i}"
        t = time.perf_counter()
        try:
            image = read_image(Path(item))[0] if isinstance(item, (str, Path)) else item
        except InputImageError as exc:
            yield ImageResult(name, None, error=str(exc))
            continue
        result = segmenter.segment([image], reference, mpp=mpp)[0]
        mask_path = None
        if out_dir is not None:
            mask_path = Path(out_dir) / f"{name}.png"
            write_mask_png(mask_path, result.mask)
            if result.labels is not None:  # instances: one id per object beside the mask
                write_labels_png(Path(out_dir) / f"{name}.labels.png", result.labels)
        yield ImageResult(name, result, mask_path, time.perf_counter() - t)


def save_prepared_reference(path: str | Path, reference: SlideReference, segmenter: Segmenter,
                            class_name: str | None = None) -> str:
    """Write a prepared reference for later runs (`--reference-cache`); returns its key (a
    hash of the reference, the config, the weights and the version)."""
    from wsi_sat.reference.cache import cache_key_parts, save_reference_cache
    from wsi_sat.writers.provenance import model_info

    parts = cache_key_parts(reference.info, reference.mpp, segmenter.config,
                            model_info(segmenter))
    return save_reference_cache(Path(path), reference, parts, class_name)


def load_prepared_reference(path: str | Path, segmenter: Segmenter
                            ) -> tuple[SlideReference, str | None]:
    """A reference written by `save_prepared_reference`, and its class name; refused
    (ReferenceError) unless it was prepared with this segmenter's config, weights and
    version."""
    from wsi_sat.reference.cache import load_reference_cache
    from wsi_sat.writers.provenance import model_info

    reference, meta = load_reference_cache(Path(path), segmenter.config, model_info(segmenter))
    return reference, meta.get("class_name")


def run_slide(slide: str | Path | SlideSource, reference: SlideReference, segmenter: Segmenter,
              config: Config | None = None, out_dir: str | Path = "results", *,
              slide_mpp: float | None = None, mpp: float | None = None, resume: bool = False,
              client: Any = None, allow_upsampling: bool = False) -> SlideSummary:
    """Segment one slide into `out_dir` (OME-Zarr labels, GeoJSON, run.json, overview).

    `config` defaults to the segmenter's; `mpp` is the working resolution (default: the
    reference's, else the slide's level-0 mpp); `slide_mpp` overrides (or stands in for) the
    slide's own pixel size, and a `SlideSource`'s `mpp` (a slide list's) overrides both;
    `client`: a Dask client, None = this process; `allow_upsampling`: accept a working
    resolution finer than the slide's level 0."""
    if mpp is not None and reference.mpp is not None and not math.isclose(mpp, reference.mpp,
                                                                          rel_tol=1e-6):
        raise ConfigError(f"the reference was prepared at {reference.mpp:g} µm/px but the slide "
                          f"is to be segmented at {mpp:g}; prepare it with working_mpp={mpp:g}")
    source = slide if isinstance(slide, SlideSource) else SlideSource(Path(slide))
    options = RunOptions(out_dir=Path(out_dir), slide_mpp=source.mpp or slide_mpp, mpp=mpp,
                         resume=resume, allow_upsampling=allow_upsampling,
                         slide_mpp_source="slide list" if source.mpp else "--slide-mpp")
    return _run_slide(source.path, reference, segmenter, config or segmenter.config, options,
                      client)


def run_slides(slides: Sequence[str | Path | SlideSource], reference: SlideReference, segmenter: Segmenter,
               config: Config | None = None, out_dir: str | Path = "results", *,
               slide_mpp: float | None = None, mpp: float | None = None, resume: bool = False,
               client: Any = None, allow_upsampling: bool = False) -> Iterator[SlideSummary]:
    """`run_slide` over a cohort, one slide after the other, yielding each summary; after
    every slide `out_dir/summary.csv` is rewritten with one row per slide of this run so far
    and per finished slide of other runs into `out_dir` (SLURM array tasks: each task's
    summary holds every slide finished before it; a cohort's log). With `resume`, a slide
    whose outputs are complete for these inputs is skipped. `slides` may carry their own
    pixel size (`SlideSource`, from `wsi_sat.io.slide.list_slides` of a slide list)."""
    rows = []
    for path in slides:
        summary = run_slide(path, reference, segmenter, config, out_dir, slide_mpp=slide_mpp,
                            mpp=mpp, resume=resume, client=client,
                            allow_upsampling=allow_upsampling)
        run_json = summary.outputs.get("run")
        if run_json and Path(run_json).is_file():
            status = "skipped (done)" if summary.skipped else "done"
            rows.append(slide_row(summary.slide, json.loads(Path(run_json).read_text()), status))
        else:
            rows.append(slide_row(summary.slide, {}, "unfinished"))
        write_summary(Path(out_dir) / "summary.csv", folder_rows(Path(out_dir), rows))
        yield summary
