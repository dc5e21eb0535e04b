"""Reading plain images (PNG, JPEG, TIFF; grey, RGB, RGBA; 8- or 16-bit) and binary masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from wsi_sat.errors import InputImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _too_large(path: Path, exc: Exception) -> InputImageError:
    return InputImageError(
        f"'{path}' is larger than Pillow decodes safely ({exc}); crop it, or pass it as a "
        "(tiled) TIFF"
    )


def _read_raw(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputImageError(f"'{path}' not found; check the path")
    if not path.is_file():
        raise InputImageError(f"'{path}' is not a file; pass an image file or a folder of images")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = tifffile.imread(path, key=0)
        else:
            with Image.open(path) as im:
                arr = np.asarray(im if im.mode in ("L", "RGB", "RGBA", "I;16", "I") else im.convert("RGBA"))
    except Image.DecompressionBombError as exc:
        raise _too_large(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, tifffile.TiffFileError) as exc:
        raise InputImageError(
            f"'{path}' is not a readable image ({exc.__class__.__name__}); "
            "use PNG, JPEG or TIFF"
        ) from None
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar TIFF
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 2:
        raise InputImageError(f"'{path}' has shape {arr.shape}; expected a 2-D grey or colour image")
    return arr


def probe_image(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header alone; raises InputImageError like read_image."""
    path = Path(path)
    if not path.is_file():
        _read_raw(path)  # raises the right error
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                return int(shape[0]), int(shape[1])
        with Image.open(path) as im:
            return im.height, im.width
    except Image.DecompressionBombError as exc:
        raise _too_large(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, tifffile.TiffFileError) as exc:
        raise InputImageError(
            f"'{path}' is not a readable image ({exc.__class__.__name__}); use PNG, JPEG or TIFF"
        ) from None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max()) if a.max() > a.min() else float(a.min()) + 1
    return np.clip((a - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 (H, W, 3) and the alpha channel (bool) when the file has one.

    16-bit and float images are scaled to 8 bits between their 0.5 and 99.5 percentiles.
    """
    arr = _read_raw(Path(path))
    alpha = None
    if arr.ndim == 3 and arr.shape[-1] == 4:
        alpha = arr[..., 3] > (np.iinfo(arr.dtype).max // 2 if arr.dtype.kind in "ui" else 0.5)
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        alpha = arr[..., 1] > 0
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.shape[-1] > 3:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr), alpha


def read_mask(path: Path) -> np.ndarray:
    """A binary mask from any single- or multi-channel image: 0/255 and 0/1 masks (foreground
    above half the maximum, so the soft edges of an anti-aliased or JPEG mask split cleanly),
    and instance label images (0 = background, 1..N = objects: every object is foreground)."""
    return binary_mask(_read_raw(Path(path)))


def read_labels(path: Path) -> np.ndarray | None:
    """The instance labels (int32, 0 = background) of a mask file that is a label image
    (MoNuSeg's instance masks, QuPath's labelled exports), else None (a binary mask)."""
    return read_mask_and_labels(path)[1]


def read_mask_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_mask` and `read_labels` of one file, decoded once."""
    arr = _read_raw(Path(path))
    single = _single_channel(arr)
    return binary_mask(arr), single.astype(np.int32) if _is_label_image(single) else None


def _single_channel(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        return arr[..., :3].max(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    return arr


def _is_label_image(arr: np.ndarray) -> bool:
    """A label image is told from a soft-edged binary mask by where its values between 0 and
    the maximum lie: on most of the foreground (labels), or only on edges."""
    peak = float(arr.max())
    nonzero = arr > 0
    middle = nonzero & (arr < peak)
    return bool(peak > 0 and np.issubdtype(arr.dtype, np.integer)
                and middle.sum() > 0.2 * nonzero.sum())


def binary_mask(arr: np.ndarray) -> np.ndarray:
    """See `read_mask`."""
    arr = _single_channel(arr)
    peak = float(arr.max())
    if peak <= 0:
        return np.zeros(arr.shape, dtype=bool)
    if _is_label_image(arr):
        return arr > 0  # an instance label image
    return arr > (peak / 2.0 if peak > 1 else 0)


def list_images(targets: list[Path]) -> list[Path]:
    """Files as given; folders expanded to their image files (sorted, masks `*_mask.*` skipped)."""
    out: list[Path] = []
    for t in targets:
        t = Path(t)
        if t.is_dir():
            found = sorted(
                p for p in t.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask")
            )
            if not found:
                raise InputImageError(f"folder '{t}' holds no PNG, JPEG or TIFF images")
            out += found
        elif t.exists():
            out.append(t)
        else:
            raise InputImageError(f"'{t}' not found; check the path")
    return out
