"""References and negative examples from image files or arrays: the mask from `--reference-mask`,
else a sibling `<stem>_mask.png`, else the image's alpha channel (a negative: else the whole
image); rescaled to the working resolution."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsi_sat.errors import ReferenceError
from wsi_sat.io.image import read_image, read_mask, read_mask_and_labels
from wsi_sat.raster import resize_mask
from wsi_sat.sat import validate_negative_mask, validate_reference_mask


@dataclass(frozen=True)
class Reference:
    name: str
    image: np.ndarray  # RGB uint8
    mask: np.ndarray  # bool, same size
    mask_source: str
    objects: np.ndarray | None = None  # instance labels when the mask file holds them

    @property
    def example(self) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) for the method: the instance labels when there are any (they tell
        the objects' size), else the mask."""
        return self.image, self.objects if self.objects is not None else self.mask


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
    objects = None
    if mask_path is not None:
        (mask, objects), source = read_mask_and_labels(Path(mask_path)), str(mask_path)
    elif alpha is not None:
        mask, source = alpha, "alpha channel"
    else:
        raise ReferenceError(
            f"no mask for reference '{image_path}': pass --reference-mask, put "
            f"{image_path.stem}_mask.png beside it, or give the image an alpha channel"
        )
    validate_reference_mask(mask, image.shape[:2], str(image_path))
    return Reference(image_path.stem, image, mask, source, objects)


def load_negative(image_path: Path, mask_path: Path | None = None) -> Reference:
    """A negative example: an image of tissue that is not the target; `mask_path` (else the
    alpha channel, else the whole image) marks the non-target pixels."""
    image_path = Path(image_path)
    image, alpha = read_image(image_path)
    if mask_path is not None:
        mask, source = read_mask(Path(mask_path)), str(mask_path)
    elif alpha is not None:
        mask, source = alpha, "alpha channel"
    else:
        mask, source = np.ones(image.shape[:2], bool), "whole image"
    validate_negative_mask(mask, image.shape[:2], str(image_path))
    return Reference(image_path.stem, image, mask, source)


def rescale_reference(ref: Reference, factor: float, negative: bool = False) -> Reference:
    """Resample a reference (or, `negative`, a negative example) by `factor` (image bilinear,
    mask nearest) to the working mpp."""
    if abs(factor - 1.0) < 1e-3:
        return ref
    from PIL import Image

    h, w = ref.mask.shape
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    image = np.asarray(Image.fromarray(ref.image).resize(size, Image.Resampling.BILINEAR))
    mask = resize_mask(ref.mask, size)
    (validate_negative_mask if negative else validate_reference_mask)(mask, image.shape[:2],
                                                                      ref.name)
    objects = None
    if ref.objects is not None:
        objects = cv2.resize(ref.objects, size, interpolation=cv2.INTER_NEAREST) * mask
    return Reference(ref.name, image, mask, ref.mask_source, objects)


ReferenceInput = Reference | tuple[np.ndarray, np.ndarray] | str | Path


def load_references(references: Sequence[ReferenceInput],
                    masks: Sequence[str | Path] = ()) -> list[Reference]:
    """References from files (mask: `masks[i]`, else `<stem>_mask.png` beside it, else the
    alpha channel), (image, mask) arrays or `Reference` objects."""
    if masks and len(masks) != len(references):
        raise ReferenceError(
            f"{len(references)} --reference but {len(masks)} --reference-mask; give one mask "
            "per reference, or none (sibling <stem>_mask.png / alpha channel)"
        )
    return [_as_reference(item, i, masks, "reference", load_reference)
            for i, item in enumerate(references)]


def load_negatives(negatives: Sequence[ReferenceInput], masks: Sequence[str | Path] = ()
                   ) -> list[Reference]:
    """Negative examples from files (mask: `masks[i]`, else the alpha channel, else the whole
    image: which pixels are not the target), (image, mask) arrays or `Reference` objects."""
    if masks and len(masks) != len(negatives):
        raise ReferenceError(
            f"{len(negatives)} --negative but {len(masks)} --negative-mask; give one mask per "
            "negative, or none (the whole image is non-target)")
    out = [_as_reference(item, i, masks, "negative", load_negative)
           for i, item in enumerate(negatives)]
    for neg in out:
        validate_negative_mask(neg.mask, neg.image.shape[:2], neg.name)
    return out


def _as_reference(item: ReferenceInput, i: int, masks: Sequence[str | Path], kind: str,
                  load: Callable[[Path, Path | None], Reference]) -> Reference:
    if isinstance(item, Reference):
        return item
    if isinstance(item, tuple):
        return Reference(f"{kind} {i}", np.asarray(item[0]), np.asarray(item[1], bool), "array")
    return load(Path(item), Path(masks[i]) if masks else None)


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
