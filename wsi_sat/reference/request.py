"""What the user asks for as the reference, in one typed object, and reading it: image files or
arrays with their masks, a QuPath annotation on a slide, negative examples, their pixel size and
the working resolution. Reading needs no model, so bad input fails before models load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wsi_sat.errors import ReferenceError
from wsi_sat.geometry import Scale
from wsi_sat.reference.annotations import read_annotated_slides, reference_from_geojson
from wsi_sat.reference.images import (
    Reference,
    ReferenceInput,
    check_negatives,
    load_negatives,
    load_references,
    rescale_reference,
)


@dataclass(frozen=True, kw_only=True)
class ReferenceRequest:
    """Every way a reference arrives (the CLI's reference options, the API's arguments).

    `images` + `masks` (one per image, or none: `<stem>_mask.png` beside it, else the alpha
    channel) at `reference_mpp` µm/px; and/or QuPath exports `geojson` drawn on `slides` (the
    n-th export on the n-th slide, or all on the one slide given; their own pixel size, else
    `reference_slide_mpp` where given (overriding it), else `slide_mpp` where they have none):
    annotations of `class_name` (else the most frequent class) are the target,
    every other class a negative example — corrections drawn on a result slide are such
    exports. `negatives` (+ `negative_masks`) are images of tissue that is not the target, at
    `reference_mpp` like the references. `working_mpp` is the resolution slides are segmented
    at: with `reference_mpp` too, the images are rescaled to it; without it, QuPath crops are
    cut at the first annotated slide's resolution; with neither (images only), the references
    are taken to be at each slide's own resolution."""

    images: Sequence[ReferenceInput] = ()
    masks: Sequence[str | Path] = ()
    reference_mpp: float | None = None
    working_mpp: float | None = None
    geojson: Sequence[str | Path] = ()
    slides: Sequence[str | Path] = ()
    slide_mpp: float | None = None
    reference_slide_mpp: float | None = None
    negatives: Sequence[ReferenceInput] = ()
    negative_masks: Sequence[str | Path] = ()
    class_name: str | None = None


@dataclass(frozen=True, kw_only=True)
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


def read_references(request: ReferenceRequest, margin: float) -> ReferenceSet:
    """Read, check and rescale what `request` names. A QuPath region is cut with `margin` x its
    size around it (`wsi.reference_margin`)."""
    if not request.images and not request.geojson:
        raise ReferenceError("give --reference (image + mask) or --reference-geojson")
    negs = load_negatives(request.negatives, request.negative_masks)
    refs = load_references(request.images, request.masks)
    check_negatives(refs, negs)
    working = request.working_mpp or request.reference_mpp
    class_name = None
    if request.geojson:
        sets = read_annotated_slides([Path(g) for g in request.geojson],
                                     [Path(s) for s in request.slides])
        got = reference_from_geojson(sets, working, margin, request.class_name,
                                     slide_mpp=request.reference_slide_mpp,
                                     fallback_mpp=request.slide_mpp)
        working, class_name = got.mpp, got.class_name
    factor = (Scale(request.reference_mpp, working).factor
              if request.reference_mpp and working else 1.0)
    refs = [rescale_reference(r, factor) for r in refs]
    negs = [rescale_reference(n, factor, True) for n in negs]
    if request.geojson:
        refs, negs = refs + got.targets, got.negatives + negs
        if not refs:
            raise ReferenceError(
                f"no annotation of the target class '{class_name}' in the exports and no "
                "--reference image: draw one example of the target")
    source = request.reference_mpp if request.images or not request.geojson else working
    return ReferenceSet(references=refs, mpp=working, source_mpp=source, negatives=negs,
                        class_name=class_name)
