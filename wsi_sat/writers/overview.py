"""`<slide>.overview.png`: a thumbnail with the tissue outline (blue) and the result (green)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.measure import find_contours

from wsi_sat.raster import resize_mask
from wsi_sat.writers.atomic import write_atomic

RESULT_RGB = np.array([0, 200, 80])
TISSUE_RGB = (30, 90, 255)


def write_overview(path: Path, thumb: np.ndarray, tissue: np.ndarray, result: np.ndarray
                   ) -> None:
    """Draw `result` (any resolution, whole slide) half-transparent over the RGB `thumb` and
    the outline of `tissue` (any resolution, whole slide) on top."""
    size = (thumb.shape[1], thumb.shape[0])
    result_img = resize_mask(result, size)
    tissue_img = resize_mask(tissue, size)
    out = thumb.astype(np.float32)
    out[result_img] = 0.5 * out[result_img] + 0.5 * RESULT_RGB
    img = Image.fromarray(out.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    # padded by one pixel: contours close along the border, and a 1-px-thin thumbnail works
    for contour in find_contours(np.pad(tissue_img.astype(np.uint8), 1), 0.5):
        draw.line([(float(c[1]) - 1, float(c[0]) - 1) for c in contour], fill=TISSUE_RGB,
                  width=2)
    write_atomic(Path(path), lambda p: img.save(p, format="PNG"))
