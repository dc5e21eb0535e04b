"""Reference loading: image + mask from `--reference-mask`, else a sibling `<stem>_mask.png`,
else the reference's alpha channel; none of these is an error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi_sat.errors import ReferenceError
from wsi_sat.geometry import CropTransform
from wsi_sat.io.image import read_image, read_mask
from wsi_sat.raster import rasterise, resize_mask
from wsi_sat.sat.reference import validate_reference_mask


@dataclass(frozen=True)
class Reference:
    name: str
    image: np.ndarray  # RGB uint8
    mask: np.ndarray  # bool, same size
    mask_source: str


def find_mask_path(image_path: Path) -> Path | None:
    for suffix in (".png", ".tif", ".tiff"):
        candidate = image_path.with_name(f"{image_path.stem}_mask{suffix}")
        if candidate.is_file():
            return candidate
    return None


def load_reference(image_path: Path, mask_path: Path | None = None) -> Reference:
    image_path = Path(image_path)
    image, alpha = read_image(image_path)
    if mask_path is None:
        mask_path = find_mask_path(image_path)
    if mask_path is not None:
        mask, source = read_mask(Path(mask_path)), str(mask_path)
    elif alpha is not None:
        mask, source = alpha, "alpha channel"
    else:
        raise ReferenceError(
            f"no mask for reference '{image_path}': pass --reference-mask, put "
            f"{image_path.stem}_mask.png beside it, or give the image an alpha channel"
        )
    validate_reference_mask(mask, image.shape[:2], str(image_path))
    return Reference(image_path.stem, image, mask, source)


def rescale_reference(ref: Reference, factor: float) -> Reference:
    """Resample a reference by `factor` (image bilinear, mask nearest) to the working mpp."""
    if abs(factor - 1.0) < 1e-3:
        return ref
    from PIL import Image

    h, w = ref.mask.shape
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    image = np.asarray(Image.fromarray(ref.image).resize(size, Image.Resampling.BILINEAR))
    mask = resize_mask(ref.mask, size)
    validate_reference_mask(mask, image.shape[:2], ref.name)
    return Reference(ref.name, image, mask, ref.mask_source)


def reference_from_geojson(geojson_path: Path, slide_path: Path, working_mpp: float | None,
                           slide_mpp: float | None, margin: float) -> tuple[Reference, float]:
    """Crop the annotated region's bounding box (plus margin) from a slide and rasterise the
    annotation as the mask. Returns the reference and its pixel size (µm/px)."""
    import json

    import shapely
    from shapely.geometry import shape

    from wsi_sat.io.slide import Slide

    path = Path(geojson_path)
    if not path.is_file():
        raise ReferenceError(f"--reference-geojson '{path}' not found; export it from QuPath")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReferenceError(f"'{path}' is not GeoJSON; export annotations from QuPath") from None
    feats = data.get("features", [data] if data.get("type") == "Feature" else [])
    geoms = [shape(f["geometry"]) for f in feats
             if f.get("geometry") and f["geometry"].get("type") in ("Polygon", "MultiPolygon")]
    if not geoms:
        raise ReferenceError(f"'{path}' holds no polygon annotation; draw one in QuPath")
    region = shapely.union_all(geoms)
    with Slide(Path(slide_path), slide_mpp) as slide:
        mpp = slide.require_mpp()
        target_mpp = working_mpp or mpp
        x0, y0, x1, y1 = region.bounds
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        x0, y0, x1, y1 = x0 - mx, y0 - my, x1 + mx, y1 + my
        crop = CropTransform(x0, y0, mpp / target_mpp)  # crop px per level-0 px
        out_w = max(2, round((x1 - x0) * crop.factor))
        out_h = max(2, round((y1 - y0) * crop.factor))
        image = slide.read_padded(x0, y0, x1 - x0, y1 - y0, (out_w, out_h))
    mask = rasterise(getattr(region, "geoms", [region]), (out_h, out_w), crop.to_crop)
    name = f"{Path(slide_path).stem}:{path.stem}"
    validate_reference_mask(mask, image.shape[:2], name)
    return Reference(name, image, mask, str(path)), target_mpp
