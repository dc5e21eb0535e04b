"""References drawn in QuPath, on any slide (a result slide too: corrections): the target
annotations cropped from the slide they were drawn on (nearby ones together, with a margin, at
the working resolution) with the annotations rasterised as the mask; every annotation of
another class cropped as a negative example."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry

from wsi_sat.errors import ReferenceError
from wsi_sat.geometry import CropTransform, Scale, qupath_to_level0
from wsi_sat.io.slide import Slide
from wsi_sat.raster import rasterise
from wsi_sat.reference.images import Reference
from wsi_sat.reference.qupath import Annotation, choose_class, read_annotations, split_by_class
from wsi_sat.sat import validate_negative_mask, validate_reference_mask


@dataclass(frozen=True)
class GeojsonReference:
    """What QuPath exports on slides give: one crop per group of nearby target annotations, one
    crop per annotation of another class (a negative example), their pixel size (µm/px) and
    the target class."""

    targets: list[Reference]
    negatives: list[Reference]
    mpp: float
    class_name: str


@dataclass(frozen=True)
class AnnotatedSlide:
    """A QuPath export and the slide its annotations were drawn on."""

    geojson: Path
    slide: Path
    annotations: list[Annotation]


def _crop(slide: Slide, box: tuple[float, float, float, float], regions: list[BaseGeometry],
          factor: float, name: str, source: str) -> Reference:
    """The level-0 `box` (x0, y0, x1, y1) read at `factor` crop px per level-0 px, and the
    `regions` rasterised as its mask (the rest of the crop: background)."""
    x0, y0, x1, y1 = box
    crop = CropTransform(x0, y0, factor)
    out_w = max(2, round((x1 - x0) * crop.factor))
    out_h = max(2, round((y1 - y0) * crop.factor))
    image = slide.read_padded(x0, y0, x1 - x0, y1 - y0, (out_w, out_h))
    polys = [g for r in regions for g in getattr(r, "geoms", [r])]
    return Reference(name, image, rasterise(polys, (out_h, out_w), crop.to_crop), source)


def _box(region: BaseGeometry, margin: float) -> tuple[float, float, float, float]:
    """The region's bounding box grown by `margin` x its size on each side."""
    x0, y0, x1, y1 = region.bounds
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return x0 - mx, y0 - my, x1 + mx, y1 + my


def _groups(regions: list[BaseGeometry], margin: float) -> list[tuple[float, float, float,
                                                                      float]]:
    """Crop boxes of the target annotations: each annotation's box with its margin, boxes that
    overlap merged (nearby annotations share one crop; far ones are cut apart, so a reference
    of many annotations costs in proportion to their area, not to the box around all)."""
    boxes = [_box(r, margin) for r in regions]
    merged = True
    while merged:
        merged, out = False, []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]),
                              max(b[3], o[3]))
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted(boxes)


def _inside_slide(region: BaseGeometry, slide: Slide, source: str) -> None:
    w0, h0 = slide.dimensions
    inside = region.intersection(shapely.box(0, 0, w0, h0)).area
    if inside < 0.5 * region.area:
        x0, y0, x1, y1 = (round(v) for v in region.bounds)
        raise ReferenceError(
            f"'{source}': the annotation ({x0}, {y0})-({x1}, {y1}) lies outside the slide "
            f"'{slide.path.name}' ({w0} x {h0} px); export it from that slide")


def read_annotated_slides(geojson: Sequence[Path], slides: Sequence[Path]
                          ) -> list[AnnotatedSlide]:
    """Each QuPath export with the slide it was drawn on: the n-th export on the n-th slide, or
    every export on the one slide given."""
    if geojson and not slides:
        raise ReferenceError("--reference-geojson needs --reference-slide (the annotated slide)")
    if slides and not geojson:
        raise ReferenceError("--reference-slide needs --reference-geojson (the annotations)")
    if len(slides) not in (1, len(geojson)):
        raise ReferenceError(f"{len(geojson)} --reference-geojson but {len(slides)} "
                             "--reference-slide; give one slide per export, or one for all")
    pairs = zip(geojson, slides if len(slides) == len(geojson) else list(slides) * len(geojson))
    return [AnnotatedSlide(Path(g), Path(s), read_annotations(Path(g))) for g, s in pairs]


def reference_from_geojson(sets: list[AnnotatedSlide], working_mpp: float | None,
                           margin: float, class_name: str | None = None, *,
                           slide_mpp: float | None = None,
                           fallback_mpp: float | None = None) -> GeojsonReference:
    """Crop the target annotations (nearby ones together) with `margin` x their size around
    them from their slides and rasterise them as the mask (holes kept); every annotation of
    another class becomes a negative example (its own bounding box, its polygon as the mask).
    The target class is `class_name`, else the most frequent class over all exports. Crops are
    at `working_mpp` (else the first slide's own resolution). A slide's pixel size is
    `slide_mpp` where given (--reference-slide-mpp), else its metadata's, else `fallback_mpp`
    (--slide-mpp, which stands in for missing metadata only)."""
    chosen = choose_class([a for s in sets for a in s.annotations], class_name,
                          ", ".join(str(s.geojson) for s in sets))
    targets: list[Reference] = []
    negatives: list[Reference] = []
    target_mpp = working_mpp
    for aset in sets:
        tgt, neg, _ = split_by_class(aset.annotations, chosen, str(aset.geojson),
                                     require_target=False)
        with Slide(aset.slide, slide_mpp, mpp_fallback=fallback_mpp,
                   mpp_flag="--reference-slide-mpp") as slide:  # QuPath's frame → level-0
            mpp = slide.require_mpp()
            target_mpp = target_mpp or mpp
            factor = Scale(mpp, target_mpp).factor  # crop px per level-0 px
            name = f"{aset.slide.stem}:{aset.geojson.stem}"
            regions = [qupath_to_level0(a.geometry, slide.bounds_xy) for a in tgt]
            for region in regions:
                _inside_slide(region, slide, str(aset.geojson))
            for i, box in enumerate(_groups(regions, margin)):
                targets.append(_crop(slide, box, regions, factor, f"{name}:{i}",
                                     str(aset.geojson)))
            for i, ann in enumerate(neg):
                geom = qupath_to_level0(ann.geometry, slide.bounds_xy)
                _inside_slide(geom, slide, str(aset.geojson))
                negatives.append(_crop(slide, _box(geom, 0.0), [geom], factor,
                                       f"{name}:{ann.class_name}:{i}", str(aset.geojson)))
    for ref in targets:
        validate_reference_mask(ref.mask, ref.image.shape[:2], ref.name)
    for neg in negatives:
        validate_negative_mask(neg.mask, neg.image.shape[:2], neg.name)
    assert target_mpp is not None
    return GeojsonReference(targets, negatives, target_mpp, chosen)
