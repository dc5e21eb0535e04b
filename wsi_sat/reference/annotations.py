"""A reference drawn in QuPath: the target annotations cropped from the slide they were drawn on
(bounding box plus a margin, at the working resolution) with the annotations rasterised as the
mask; every annotation of another class cropped as a negative example."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry

from wsi_sat.errors import ReferenceError
from wsi_sat.geometry import CropTransform, Scale, qupath_to_level0
from wsi_sat.io.slide import Slide
from wsi_sat.raster import rasterise
from wsi_sat.reference.images import Reference
from wsi_sat.reference.qupath import read_annotations, split_by_class
from wsi_sat.sat import validate_negative_mask, validate_reference_mask


@dataclass(frozen=True)
class GeojsonReference:
    """What a QuPath export gives: the target crop, one crop per negative annotation, their
    pixel size (µm/px) and the target class."""

    target: Reference
    negatives: list[Reference]
    mpp: float
    class_name: str


def _crop(slide: Slide, region: BaseGeometry, margin: float, factor: float, name: str,
          source: str) -> Reference:
    """The region's bounding box plus `margin` x its size, read at `factor` crop px per
    level-0 px, and the region rasterised as the mask."""
    x0, y0, x1, y1 = region.bounds
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    x0, y0, x1, y1 = x0 - mx, y0 - my, x1 + mx, y1 + my
    crop = CropTransform(x0, y0, factor)
    out_w = max(2, round((x1 - x0) * crop.factor))
    out_h = max(2, round((y1 - y0) * crop.factor))
    image = slide.read_padded(x0, y0, x1 - x0, y1 - y0, (out_w, out_h))
    mask = rasterise(getattr(region, "geoms", [region]), (out_h, out_w), crop.to_crop)
    return Reference(name, image, mask, source)


def _inside_slide(region: BaseGeometry, slide: Slide, source: str) -> None:
    w0, h0 = slide.dimensions
    inside = region.intersection(shapely.box(0, 0, w0, h0)).area
    if inside < 0.5 * region.area:
        x0, y0, x1, y1 = (round(v) for v in region.bounds)
        raise ReferenceError(
            f"'{source}': the annotation ({x0}, {y0})-({x1}, {y1}) lies outside the slide "
            f"'{slide.path.name}' ({w0} x {h0} px); export it from that slide")


def reference_from_geojson(geojson_path: Path, slide_path: Path, working_mpp: float | None,
                           slide_mpp: float | None, margin: float,
                           class_name: str | None = None) -> GeojsonReference:
    """Crop the target annotations' bounding box (plus margin) from a slide and rasterise them
    as the mask (holes kept); every annotation of another class becomes a negative example (its
    own bounding box, its polygon as the mask). The target class is `class_name`, else the most
    frequent class. Crops are at `working_mpp` (else the slide's own resolution)."""
    path = Path(geojson_path)
    targets, negatives, chosen = split_by_class(read_annotations(path), class_name, str(path))
    with Slide(Path(slide_path), slide_mpp) as slide:  # QuPath's coordinates → level-0
        region = qupath_to_level0(shapely.union_all([a.geometry for a in targets]),
                                  slide.bounds_xy)
        mpp = slide.require_mpp()
        target_mpp = working_mpp or mpp
        factor = Scale(mpp, target_mpp).factor  # crop px per level-0 px
        _inside_slide(region, slide, str(path))
        name = f"{Path(slide_path).stem}:{path.stem}"
        target = _crop(slide, region, margin, factor, name, str(path))
        negs = []
        for i, neg in enumerate(negatives):
            geom = qupath_to_level0(neg.geometry, slide.bounds_xy)
            _inside_slide(geom, slide, str(path))
            negs.append(_crop(slide, geom, 0.0, factor,
                              f"{name}:{neg.class_name}:{i}", str(path)))
    validate_reference_mask(target.mask, target.image.shape[:2], target.name)
    for neg in negs:
        validate_negative_mask(neg.mask, neg.image.shape[:2], neg.name)
    return GeojsonReference(target, negs, target_mpp, chosen)
