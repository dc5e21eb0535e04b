"""Reference loading: image + mask from `--reference-mask`, else a sibling `<stem>_mask.png`,
else the reference's alpha channel; none of these is an error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi_sat.errors import ReferenceError
from wsi_sat.io.image import read_image, read_mask
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


def load_references(images: list[Path], masks: list[Path]) -> list[Reference]:
    if masks and len(masks) != len(images):
        raise ReferenceError(
            f"{len(images)} --reference but {len(masks)} --reference-mask; give one mask per "
            "reference, or none (sibling <stem>_mask.png / alpha channel)"
        )
    return [load_reference(p, masks[i] if masks else None) for i, p in enumerate(images)]
