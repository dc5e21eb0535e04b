"""Build pyramidal tiled TIFF slides with real MPP metadata from ordinary images (and their
ground-truth masks): the demo slide, test slides and benchmark slides are made this way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def write_pyramidal_tiff(path: Path, image: np.ndarray, mpp: float, tile_px: int = 256,
                         min_px: int = 512, compression: str = "zlib") -> int:
    """Tiled, pyramidal (SubIFD) RGB TIFF with resolution tags in µm; returns the level count."""
    levels = [image]
    while max(levels[-1].shape[:2]) // 2 >= min_px:
        prev = levels[-1]
        h, w = prev.shape[:2]
        levels.append(np.asarray(Image.fromarray(prev).resize((w // 2, h // 2),
                                                              Image.Resampling.BOX)))
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as tif:
        for i, level in enumerate(levels):
            res = 1e4 / (mpp * 2**i)  # pixels per centimetre
            tif.write(
                level, tile=(tile_px, tile_px), photometric="rgb", compression=compression,
                resolution=(res, res), resolutionunit="CENTIMETER",
                subifds=len(levels) - 1 if i == 0 else None,
                subfiletype=1 if i else 0, metadata=None,
            )
    return len(levels)


def mosaic(pairs: list[tuple[np.ndarray, np.ndarray]], cols: int, cell_hw: tuple[int, int],
           gap_px: int = 0, background: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Lay image/mask pairs on a grid (each cropped or padded to `cell_hw`); returns the mosaic
    image and its ground-truth mask."""
    rows = -(-len(pairs) // cols)
    ch, cw = cell_hw
    h, w = rows * ch + (rows + 1) * gap_px, cols * cw + (cols + 1) * gap_px
    image = np.full((h, w, 3), background, np.uint8)
    mask = np.zeros((h, w), bool)
    for i, (img, m) in enumerate(pairs):
        r, c = divmod(i, cols)
        y, x = gap_px + r * (ch + gap_px), gap_px + c * (cw + gap_px)
        ih, iw = min(ch, img.shape[0]), min(cw, img.shape[1])
        image[y : y + ih, x : x + iw] = img[:ih, :iw]
        mask[y : y + ih, x : x + iw] = m[:ih, :iw]
    return image, mask
