"""Regions of a tiled TIFF level decoded straight from its tiles, with tifffile.

tiffslide reads a region through zarr's asynchronous store machinery over tifffile's
`ZarrTiffStore`; for a whole-slide tile that machinery costs a good part of the decoding's own
CPU. This reads the same tiles with the same
decoder (`TiffPage.decode`, with the JPEG tables and header as tifffile's store passes them) and
copies them into the region; it keeps the last decoded tiles, so neighbouring regions of a row,
which share a column of tiles, decode it once.

Used only where it reads exactly what tiffslide reads (tested against it): the level of a
series without composition whose page is tiled (not NDPI's stripes), of 8-bit contiguous
samples, with every tile of the region stored (a missing tile is tiffslide's fill value), and
regions inside the level. Anything else is tiffslide's (`tiled_level` returns None, `read`
returns None).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

DECODED_TILES_KEPT = 48  # ~9 MB of 256² RGB tiles: two rows of regions' worth of columns


class TiledLevel:
    """One level of a tiled TIFF series: regions of it decoded tile by tile."""

    def __init__(self, page: Any, keyframe: Any) -> None:
        self._page = page
        self._keyframe = keyframe
        self.height, self.width = int(keyframe.imagelength), int(keyframe.imagewidth)
        self.samples = int(keyframe.samplesperpixel)
        self._tile_hw = (int(keyframe.tilelength), int(keyframe.tilewidth))
        self._tiles_across = -(-self.width // self._tile_hw[1])
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._args: dict[str, Any] = {"_fullsize": True}
        if page.jpegtables is not None:
            self._args["jpegtables"] = page.jpegtables
        if keyframe.jpegheader is not None:
            self._args["jpegheader"] = keyframe.jpegheader
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()

    def _tile(self, index: int) -> np.ndarray | None:
        """Decoded tile `index` (th, tw, samples), None when it is not stored."""
        tile = self._decoded.get(index)
        if tile is not None:
            self._decoded.move_to_end(index)
            return tile
        offset, count = self._offsets[index], self._counts[index]
        if not offset or not count:
            return None
        fh = self._page.parent.filehandle
        with fh.lock:
            fh.seek(offset)
            data = fh.read(count)
        decoded = self._keyframe.decode(data, index, **self._args)[0]
        if decoded is None:
            return None
        tile = decoded.reshape(*self._tile_hw, self.samples)
        self._decoded[index] = tile
        if len(self._decoded) > DECODED_TILES_KEPT:
            self._decoded.popitem(last=False)
        return tile

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray | None:
        """(h, w, samples) uint8 pixels of the region at (x, y) of this level, or None when the
        region leaves the level or one of its tiles is not stored."""
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            return None
        th, tw = self._tile_hw
        out = np.empty((h, w, self.samples), np.uint8)
        for ty in range(y // th, (y + h - 1) // th + 1):
            y0, y1 = max(y, ty * th), min(y + h, (ty + 1) * th)
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                tile = self._tile(ty * self._tiles_across + tx)
                if tile is None:
                    return None
                x0, x1 = max(x, tx * tw), min(x + w, (tx + 1) * tw)
                out[y0 - y:y1 - y, x0 - x:x1 - x] = \
                    tile[y0 - ty * th:y1 - ty * th, x0 - tx * tw:x1 - tx * tw]
        return out


def tiled_level(tiffslide_slide: Any, level: int) -> TiledLevel | None:
    """The `TiledLevel` of a tiffslide slide's level when it reads exactly what tiffslide reads
    (see the module's docstring), else None."""
    try:
        props = tiffslide_slide.properties
        if props.get("tiffslide.series-composition") or \
                props.get("tiffslide.series-axes") != "YXS":
            return None
        series = tiffslide_slide.ts_tifffile.series[props.get("tiffslide.series-index", 0)]
        lvl = series.levels[level]
        if len(lvl.pages) != 1:
            return None
        page, keyframe = lvl.pages[0], lvl.keyframe
        if page is None:
            return None
        ok = (keyframe.is_tiled and not keyframe.is_ndpi and keyframe.planarconfig == 1
              and keyframe.dtype == np.uint8 and keyframe.imagedepth == 1
              and keyframe.tiledepth == 1 and keyframe.samplesperpixel in (3, 4)
              and tuple(lvl.shape) == (keyframe.imagelength, keyframe.imagewidth,
                                       keyframe.samplesperpixel)
              and len(page.dataoffsets) == -(-keyframe.imagelength // keyframe.tilelength)
              * -(-keyframe.imagewidth // keyframe.tilewidth))
        return TiledLevel(page, keyframe) if ok else None
    except Exception:  # noqa: BLE001 - anything unusual is tiffslide's to read
        return None
