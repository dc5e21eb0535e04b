"""Boxes and the only coordinate math: level-0 pixels ↔ working pixels.

Working pixels are pixels at the working resolution (`working_mpp` µm/px); one working pixel
spans `downsample = working_mpp / slide_mpp` level-0 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Scale:
    """Level-0 pixel size and working pixel size, in µm/px."""

    slide_mpp: float
    working_mpp: float

    @property
    def downsample(self) -> float:
        """Level-0 pixels per working pixel."""
        return self.working_mpp / self.slide_mpp

    def working_size(self, level0_w: int, level0_h: int) -> tuple[int, int]:
        return math.ceil(level0_w / self.downsample), math.ceil(level0_h / self.downsample)

    def to_level0(self, box_working: Box) -> tuple[float, float, float, float]:
        """(x, y, w, h) in level-0 pixels of a working-pixel box."""
        d = self.downsample
        return box_working.x0 * d, box_working.y0 * d, box_working.width * d, box_working.height * d
