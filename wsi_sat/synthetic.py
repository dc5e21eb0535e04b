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


def _render(placements: list[tuple[int, int, np.ndarray]], box: tuple[int, int, int, int],
            downsample: int, cache: dict[tuple[int, int], np.ndarray],
            background: int) -> np.ndarray:
    """Pixels of `box` (x0, y0, x1, y1, pixels of the level) of a layout at `downsample`."""
    x0, y0, x1, y1 = box
    out = np.full((y1 - y0, x1 - x0, 3), background, np.uint8)
    for i, (px, py, img) in enumerate(placements):
        key = (i, downsample)
        lx, ly = px // downsample, py // downsample
        lh, lw = max(1, img.shape[0] // downsample), max(1, img.shape[1] // downsample)
        if lx >= x1 or ly >= y1 or lx + lw <= x0 or ly + lh <= y0:
            continue
        if key not in cache:
            cache[key] = img if downsample == 1 else np.asarray(
                Image.fromarray(img).resize((lw, lh), Image.Resampling.BOX))
        src = cache[key]
        ax0, ay0 = max(x0, lx), max(y0, ly)
        ax1, ay1 = min(x1, lx + src.shape[1]), min(y1, ly + src.shape[0])
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = src[ay0 - ly : ay1 - ly, ax0 - lx : ax1 - lx]
    return out


def write_layout_tiff(path: Path, size_wh: tuple[int, int],
                      placements: list[tuple[int, int, np.ndarray]], mpp: float,
                      tile_px: int = 256, min_px: int = 512, background: int = 255) -> int:
    """A pyramidal tiled TIFF of any size (40k x 40k included) from images placed at (x, y)
    level-0 pixels on glass, rendered tile by tile: memory holds the placed images, never the
    slide. Returns the level count."""
    w, h = size_wh
    downsamples = [1]
    while max(w, h) // (downsamples[-1] * 2) >= min_px:
        downsamples.append(downsamples[-1] * 2)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def tiles(ds: int):
        lw, lh = w // ds, h // ds
        for ty in range(0, lh, tile_px):
            for tx in range(0, lw, tile_px):
                tile = np.full((tile_px, tile_px, 3), background, np.uint8)
                part = _render(placements, (tx, ty, min(lw, tx + tile_px), min(lh, ty + tile_px)),
                               ds, cache, background)
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile

    with tifffile.TiffWriter(path, bigtiff=w * h * 3 > 2**31) as tif:
        for i, ds in enumerate(downsamples):
            res = 1e4 / (mpp * ds)
            tif.write(
                tiles(ds), shape=(h // ds, w // ds, 3), dtype=np.uint8, tile=(tile_px, tile_px),
                photometric="rgb", compression="zlib", resolution=(res, res),
                resolutionunit="CENTIMETER", subifds=len(downsamples) - 1 if i == 0 else None,
                subfiletype=1 if i else 0, metadata=None,
            )
    return len(downsamples)
