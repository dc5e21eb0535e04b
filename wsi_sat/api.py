"""The typed whole-slide API: what the CLI calls, and what a notebook calls (no globals).

    from wsi_sat import api
    seg = api.load_segmenter(api.load_config(None, ["runtime.device=cpu"]))  # models, once
    ref = api.prepare_reference(seg, ["ref.png"], reference_mpp=0.5)        # once per run
    summary = api.run_slide("slide.svs", ref, seg, out_dir="results")       # per slide

`prepare_reference` is the one home for every way a reference arrives: image files (with their
masks), arrays, `Reference` objects, or a QuPath GeoJSON annotation on a slide; it rescales
them to the working resolution and encodes them at the tiles' scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat.config import Config, load_config
from wsi_sat.errors import ConfigError, ReferenceError
from wsi_sat.io.reference import (
    Reference,
    load_negative,
    load_reference,
    reference_from_geojson,
    rescale_reference,
)
from wsi_sat.pipeline import RunOptions, SlideReference, SlideSummary, prepare_slide_reference
from wsi_sat.pipeline import run_slide as _run_slide
from wsi_sat.sat.reference import validate_negative_mask
from wsi_sat.segmenter import Segmenter, SegmentResult
from wsi_sat.writers.tables import folder_rows, slide_row, write_summary

__all__ = ["Config", "Reference", "ReferenceSet", "SegmentResult", "Segmenter", "SlideReference",
           "SlideSummary", "load_config", "load_references", "load_segmenter",
           "load_prepared_reference", "prepare_reference", "read_references", "run_slide",
           "run_slides", "save_prepared_reference"]

ReferenceInput = Reference | tuple[np.ndarray, np.ndarray] | str | Path


def load_segmenter(config: Config | None = None) -> Segmenter:
    """Load the models of `config` (default config when None) once."""
    return Segmenter.from_config(config or load_config())


def load_references(references: Sequence[ReferenceInput],
                    masks: Sequence[str | Path] = ()) -> list[Reference]:
    """References from files (mask: `masks[i]`, else `<stem>_mask.png` beside it, else the
    alpha channel), (image, mask) arrays or `Reference` objects."""
    if masks and len(masks) != len(references):
        raise ReferenceError(
            f"{len(references)} --reference but {len(masks)} --reference-mask; give one mask "
            "per reference, or none (sibling <stem>_mask.png / alpha channel)"
        )
    out = []
    for i, item in enumerate(references):
        if isinstance(item, Reference):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Reference(f"reference {i}", np.asarray(item[0]), np.asarray(item[1], bool),
                                 "array"))
        else:
            out.append(load_reference(Path(item), Path(masks[i]) if masks else None))
    return out


@dataclass(frozen=True)
class ReferenceSet:
    """References (and negative examples) read and rescaled, not yet encoded: they are at `mpp`
    µm/px (the working resolution; None = taken to be at each slide's own), `source_mpp` is the
    pixel size they were given at (run.json); `class_name` is the target class of a QuPath
    export (None for image references)."""

    references: list[Reference]
    mpp: float | None = None
    source_mpp: float | None = None
    negatives: list[Reference] = field(default_factory=list)
    class_name: str | None = None


def load_negatives(negatives: Sequence[ReferenceInput], masks: Sequence[str | Path] = ()
                   ) -> list[Reference]:
    """Negative examples from files (mask: `masks[i]`, else the alpha channel, else the whole
    image: which pixels are not the target), (image, mask) arrays or `Reference` objects."""
    if masks and len(masks) != len(negatives):
        raise ReferenceError(
            f"{len(negatives)} --negative but {len(masks)} --negative-mask; give one mask per "
            "negative, or none (the whole image is non-target)")
    out = []
    for i, item in enumerate(negatives):
        if isinstance(item, Reference):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Reference(f"negative {i}", np.asarray(item[0]), np.asarray(item[1], bool),
                                 "array"))
        else:
            out.append(load_negative(Path(item), Path(masks[i]) if masks else None))
    for neg in out:
        validate_negative_mask(neg.mask, neg.image.shape[:2], neg.name)
    return out


def check_negatives(references: list[Reference], negatives: list[Reference]) -> None:
    """A negative must not mark a reference's target: refused when a negative is the same image
    as a reference and its mask overlaps that reference's mask."""
    for ref in references:
        for neg in negatives:
            same = ref.image.shape == neg.image.shape and np.array_equal(ref.image, neg.image)
            if same and (ref.mask & neg.mask).any():
                raise ReferenceError(
                    f"negative '{neg.name}' marks pixels of the target in reference "
                    f"'{ref.name}'; a negative mask must leave the target out")


def read_references(references: Sequence[ReferenceInput] = (), *,
                    masks: Sequence[str | Path] = (), reference_mpp: float | None = None,
                    working_mpp: float | None = None, geojson: str | Path | None = None,
                    slide: str | Path | None = None, slide_mpp: float | None = None,
                    margin: float = 0.25, negatives: Sequence[ReferenceInput] = (),
                    negative_masks: Sequence[str | Path] = (), class_name: str | None = None
                    ) -> ReferenceSet:
    """Read the references and negative examples (no model needed: bad input fails before
    models load).

    `reference_mpp`: the references' pixel size (µm/px); `working_mpp`: the resolution slides
    are segmented at. With both, the references are rescaled to `working_mpp`; with only
    `reference_mpp`, slides are segmented at it; with neither, the references are taken to be
    at each slide's own resolution. `geojson` + `slide` (+ `slide_mpp` when the slide has no
    pixel size) crop the annotated region, plus `margin` x its size, from that slide at
    `working_mpp` (else the slide's resolution): annotations of `class_name` (else the most
    frequent class) are the target, every other class a negative example. `negatives` (images
    of non-target tissue, `negative_masks` marking which pixels) are at `reference_mpp` like
    the references."""
    negs = load_negatives(negatives, negative_masks)
    if geojson is not None:
        if slide is None:
            raise ReferenceError("--reference-geojson needs --reference-slide (the annotated slide)")
        got = reference_from_geojson(Path(geojson), Path(slide), working_mpp, slide_mpp, margin,
                                     class_name)
        if reference_mpp and working_mpp:
            negs = [rescale_reference(n, reference_mpp / working_mpp, True) for n in negs]
        return ReferenceSet([got.target], got.mpp, got.mpp, got.negatives + negs, got.class_name)
    if not references:
        raise ReferenceError("give --reference (image + mask) or --reference-geojson")
    refs = load_references(references, masks)
    check_negatives(refs, negs)
    if reference_mpp and working_mpp:
        refs = [rescale_reference(r, reference_mpp / working_mpp) for r in refs]
        negs = [rescale_reference(n, reference_mpp / working_mpp, True) for n in negs]
    return ReferenceSet(refs, working_mpp or reference_mpp, reference_mpp, negs)


def prepare_reference(segmenter: Segmenter,
                      references: ReferenceSet | Sequence[ReferenceInput] = (),
                      **read: Any) -> SlideReference:
    """The reference of a whole-slide run, encoded once: a `ReferenceSet`, or what
    `read_references` takes (references, then its keyword arguments)."""
    if not isinstance(references, ReferenceSet):
        read.setdefault("margin", segmenter.config.wsi.reference_margin)
        references = read_references(references, **read)
    prepared = prepare_slide_reference(segmenter, references.references, segmenter.config,
                                       references.mpp, references.negatives)
    prepared.info["mpp"] = references.source_mpp
    return prepared


def save_prepared_reference(path: str | Path, reference: SlideReference, segmenter: Segmenter,
                            class_name: str | None = None) -> str:
    """Write a prepared reference for later runs (`--reference-cache`); returns its key (a
    hash of the reference, the config, the weights and the version)."""
    from wsi_sat.pipeline.reference_cache import cache_key_parts, save_reference_cache
    from wsi_sat.writers.provenance import model_info

    parts = cache_key_parts(reference.info, reference.mpp, segmenter.config,
                            model_info(segmenter))
    return save_reference_cache(Path(path), reference, parts, class_name)


def load_prepared_reference(path: str | Path, segmenter: Segmenter
                            ) -> tuple[SlideReference, str | None]:
    """A reference written by `save_prepared_reference`, and its class name; refused
    (ReferenceError) unless it was prepared with this segmenter's config, weights and
    version."""
    from wsi_sat.pipeline.reference_cache import load_reference_cache
    from wsi_sat.writers.provenance import model_info

    reference, meta = load_reference_cache(Path(path), segmenter.config, model_info(segmenter))
    return reference, meta.get("class_name")


def run_slide(slide: str | Path, reference: SlideReference, segmenter: Segmenter,
              config: Config | None = None, out_dir: str | Path = "results", *,
              slide_mpp: float | None = None, mpp: float | None = None, resume: bool = False,
              client: Any = None) -> SlideSummary:
    """Segment one slide into `out_dir` (OME-Zarr labels, GeoJSON, run.json, overview).

    `config` defaults to the segmenter's; `mpp` is the working resolution (default: the
    reference's, else the slide's level-0 mpp); `client`: a Dask client, None = this process."""
    if mpp is not None and reference.mpp is not None and not math.isclose(mpp, reference.mpp,
                                                                          rel_tol=1e-6):
        raise ConfigError(f"the reference was prepared at {reference.mpp:g} µm/px but the slide "
                          f"is to be segmented at {mpp:g}; prepare it with working_mpp={mpp:g}")
    options = RunOptions(Path(out_dir), slide_mpp, mpp, resume)
    return _run_slide(Path(slide), reference, segmenter, config or segmenter.config, options,
                      client)


def run_slides(slides: Sequence[str | Path], reference: SlideReference, segmenter: Segmenter,
               config: Config | None = None, out_dir: str | Path = "results", *,
               slide_mpp: float | None = None, mpp: float | None = None, resume: bool = False,
               client: Any = None) -> Iterator[SlideSummary]:
    """`run_slide` over a cohort, one slide after the other, yielding each summary; after
    every slide `out_dir/summary.csv` is rewritten with one row per slide of this run so far
    and per finished slide of other runs into `out_dir` (SLURM array tasks: each task's
    summary holds every slide finished before it; a cohort's log). With `resume`, a slide
    whose outputs are complete for these inputs is skipped."""
    rows = []
    for path in slides:
        summary = run_slide(path, reference, segmenter, config, out_dir, slide_mpp=slide_mpp,
                            mpp=mpp, resume=resume, client=client)
        run_json = summary.outputs.get("run")
        if run_json and Path(run_json).is_file():
            status = "skipped (done)" if summary.skipped else "done"
            rows.append(slide_row(summary.slide, json.loads(Path(run_json).read_text()), status))
        else:
            rows.append(slide_row(summary.slide, {}, "unfinished"))
        write_summary(Path(out_dir) / "summary.csv", folder_rows(Path(out_dir), rows))
        yield summary
