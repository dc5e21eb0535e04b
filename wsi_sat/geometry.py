"""The only coordinate math: pixel frames and the transforms between them.

Frames (every variable and argument that holds coordinates says which one in its name):

* level-0 — pixels of the slide's full-resolution level (`slide_mpp` µm/px); run.json and the
  label store use it.
* QuPath — level-0 pixels less the slide's bounds offset (`Slide.bounds_xy`: QuPath crops MRXS,
  SCN and other openslide images to their non-empty region). GeoJSON out and in, the tables.
* level — pixels of one pyramid level of the slide file (the reader picks it; io/slide.py).
* working — pixels at the working resolution (`working_mpp` µm/px): tiles, the tile grid and
  level 0 of the OME-Zarr label pyramid. One working pixel spans `Scale.downsample` level-0 px.
* thumbnail — a whole-slide mask at any resolution (tissue detection), mapped by proportion.
* tile — pixels of one tile's read box (its core plus halo), origin at the read box's corner.
* input — pixels of the encoder's input after SAM's resize (`InputTransform`).
* patch — the encoder's patch grid (rows, columns); a patch spans `patch_hw` image pixels.

Like segment-anything's `ResizeLongestSide`, each transform moves pixels and coordinates
together, so a box, a mask and a polygon in one frame land on the same place in another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class Box:
    """Axis-aligned box [x0, x1) × [y0, y1) in some pixel frame (say which in the name)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def clip(self, width: int, height: int) -> Box:
        return Box(max(0, self.x0), max(0, self.y0), min(width, self.x1), min(height, self.y1))

    def slice_within(self, outer: Box) -> tuple[slice, slice]:
        """numpy (rows, cols) slice of this box inside an array that covers `outer` (same
        frame): a tile's core inside its read box."""
        oy, ox = self.y0 - outer.y0, self.x0 - outer.x0
        return np.s_[oy : oy + self.height, ox : ox + self.width]


@dataclass(frozen=True)
class Scale:
    """Level-0 ↔ working pixels, from the two pixel sizes (µm/px)."""

    slide_mpp: float
    working_mpp: float

    @property
    def downsample(self) -> float:
        """Level-0 pixels per working pixel."""
        return self.working_mpp / self.slide_mpp

    @property
    def factor(self) -> float:
        """Working pixels per level-0 pixel (a resampling factor)."""
        return self.slide_mpp / self.working_mpp

    @property
    def level0(self) -> Scale:
        """The slide's own pixels as the working ones: µm measures of level-0 coordinates."""
        return Scale(self.slide_mpp, self.slide_mpp)

    def um(self, px: float) -> float:
        """Working pixels → µm."""
        return px * self.working_mpp

    def px(self, um: float) -> float:
        """µm → working pixels."""
        return um / self.working_mpp

    def area_um2(self, px2: float) -> float:
        """An area in working pixels → µm²."""
        return px2 * self.working_mpp**2

    def area_px(self, um2: float) -> float:
        """An area in µm² → working pixels."""
        return um2 / self.working_mpp**2

    def working_size(self, level0_w: int, level0_h: int) -> tuple[int, int]:
        """(w, h) in working pixels of a slide of (w, h) level-0 pixels."""
        return math.ceil(level0_w / self.downsample), math.ceil(level0_h / self.downsample)

    def to_level0(self, box_working: Box) -> tuple[float, float, float, float]:
        """(x, y, w, h) in level-0 pixels of a working-pixel box."""
        d = self.downsample
        return box_working.x0 * d, box_working.y0 * d, box_working.width * d, box_working.height * d

    def coarser(self, factor: float) -> Scale:
        """The same slide at `factor` x the working µm/px (coarse-to-fine)."""
        return Scale(self.slide_mpp, self.working_mpp * factor)

    def geometries_to_level0(self, geoms_tile: list[BaseGeometry],
                             origin_working: tuple[float, float]) -> list[BaseGeometry]:
        """Shapely geometries in the pixels of an array whose corner is at `origin_working`
        (x, y working pixels) → level-0 pixels, in one call: (x + ox, y + oy) x downsample
        (the same numbers as shapely.affinity's translate, then scale about (0, 0))."""
        shift = np.asarray(origin_working, dtype=np.float64)
        moved = shapely.transform(np.asarray(geoms_tile, dtype=object),
                                  lambda xy: (xy + shift) * self.downsample)
        return list(moved)

    def level0_to_pyramid_centres(self, xy_level0: np.ndarray, level: int) -> np.ndarray:
        """Level-0 coordinates → coordinates on pyramid level `level` of the label store (2^level
        working px per pixel) in which pixel (x, y) is centred on (x, y): a label at that level
        samples the working pixel (x·2^level, y·2^level), whose centre is half a pixel past its
        edge."""
        xy_working = np.asarray(xy_level0, dtype=np.float64) / self.downsample
        return (xy_working - 0.5) / 2**level


@dataclass(frozen=True)
class CropTransform:
    """Level-0 pixels ↔ pixels of a crop whose corner is at (x0, y0) level-0 pixels, resampled
    at `factor` crop pixels per level-0 pixel (a reference cut from a slide)."""

    x0_level0: float
    y0_level0: float
    factor: float

    def to_crop(self, xy_level0: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy_level0, dtype=np.float64)
        return (xy - np.array([self.x0_level0, self.y0_level0])) * self.factor


def level0_to_qupath(geom: BaseGeometry, bounds_xy: tuple[int, int]) -> BaseGeometry:
    """A level-0 geometry in QuPath's frame (its origin is the slide's bounds offset)."""
    bx, by = bounds_xy
    return geom if not (bx or by) else shapely.affinity.translate(geom, -bx, -by)


def qupath_to_level0(geom: BaseGeometry, bounds_xy: tuple[int, int]) -> BaseGeometry:
    bx, by = bounds_xy
    return geom if not (bx or by) else shapely.affinity.translate(geom, bx, by)


def mask_on_box(mask_thumb: np.ndarray, box: Box, frame_wh: tuple[int, int]) -> np.ndarray:
    """A mask covering a whole frame of `frame_wh` (w, h) pixels, stored at any resolution
    (thumbnail frame), resampled onto `box` (pixels of that frame) by nearest neighbour;
    outside the frame is False."""
    th, tw = mask_thumb.shape
    w, h = frame_wh
    ys = np.clip(((np.arange(box.y0, box.y1) + 0.5) * th / h).astype(int), -1, th)
    xs = np.clip(((np.arange(box.x0, box.x1) + 0.5) * tw / w).astype(int), -1, tw)
    yv, y_runs = np.unique(ys, return_counts=True)
    xv, x_runs = np.unique(xs, return_counts=True)
    small = mask_thumb[np.clip(yv, 0, th - 1)][:, np.clip(xv, 0, tw - 1)]
    small &= ((yv >= 0) & (yv < th))[:, None] & ((xv >= 0) & (xv < tw))[None, :]
    return _repeat_runs(small, y_runs, x_runs)


def take_sorted(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`values[rows][:, cols]` for non-decreasing index arrays (nearest-neighbour resampling):
    each source row and column is taken once and repeated (not gathered pixel by pixel)."""
    rv, r_runs = np.unique(rows, return_counts=True)
    cv, c_runs = np.unique(cols, return_counts=True)
    return _repeat_runs(values[rv][:, cv], r_runs, c_runs)


def _repeat_runs(small: np.ndarray, row_runs: np.ndarray, col_runs: np.ndarray) -> np.ndarray:
    # columns first, on the small array; the rows then repeat as whole rows (the other order
    # gives the same array, copying the full-width rows twice)
    return np.repeat(np.repeat(small, col_runs, axis=1), row_runs, axis=0)


def box_fraction(mask_thumb: np.ndarray, box: Box, frame_wh: tuple[int, int]) -> float:
    """Fraction of `box` (pixels of a frame of `frame_wh`) that is True in a whole-frame mask
    at any resolution (every thumbnail pixel the box touches counts)."""
    th, tw = mask_thumb.shape
    w, h = frame_wh
    y0 = int(box.y0 * th / h)
    y1 = max(y0 + 1, math.ceil(box.y1 * th / h))
    x0 = int(box.x0 * tw / w)
    x1 = max(x0 + 1, math.ceil(box.x1 * tw / w))
    patch = mask_thumb[y0:y1, x0:x1]
    return float(patch.mean()) if patch.size else 0.0


def patch_centres_xy(grid_hw: tuple[int, int], patch_hw: tuple[float, float]) -> np.ndarray:
    """(gh*gw, 2) patch centres (x, y) in image pixels, row-major."""
    gh, gw = grid_hw
    ys = (np.arange(gh) + 0.5) * patch_hw[0]
    xs = (np.arange(gw) + 0.5) * patch_hw[1]
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


@dataclass(frozen=True)
class InputTransform:
    """Image pixels ↔ encoder-input pixels (SAM's resize, then padding to a square)."""

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]

    @staticmethod
    def fit(original_hw: tuple[int, int], input_px: int, scale: float | None = None
            ) -> InputTransform:
        """Longest side to `input_px` (SAM's default), or a fixed `scale` (input px per image
        px; whole slides keep tiles and reference at one scale), never larger than the input."""
        h, w = original_hw
        longest = input_px / max(h, w)
        s = longest if scale is None else min(scale, longest)
        return InputTransform((h, w), (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))))

    @property
    def scale(self) -> float:
        """Input pixels per image pixel."""
        return self.input_hw[0] / self.original_hw[0]

    def coords_to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) image-pixel (x, y) → input pixels (per-axis, as the resize)."""
        return np.asarray(xy, dtype=np.float32) * np.array(
            [self.input_hw[1] / self.original_hw[1], self.input_hw[0] / self.original_hw[0]],
            dtype=np.float32)
