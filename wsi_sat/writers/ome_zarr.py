"""OME-Zarr (NGFF 0.4, zarr v2 format) label pyramid of the slide's mask.

Layout of `<slide>.ome.zarr/`: the root group is a multiscale label image (`multiscales` +
`image-label` metadata); `0/` is at the working resolution (axes y, x; scale in µm), each further
level halves it (labels are subsampled, never interpolated). Chunk keys are nested
(`0/<row>/<column>`, dimension separator "/", as NGFF requires). Level-0 chunks are the tile
cores, so every tile writes its own chunks and no two tasks touch the same chunk.

The arrays are written here, chunk by chunk, because tiles write level 0 from many workers and
resumes, and only chunks under segmented tiles are computed for each level: `ome_zarr.writer`
writes whole in-memory or dask arrays. The metadata is built and validated by `ome-zarr-models`
(the NGFF 0.4 models), so a store that does not follow the spec is never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from ome_zarr_models.v04.image_label import ImageLabelAttrs

FORMAT = dict(zarr_format=2)
# NGFF 0.4: chunk keys nested with "/" (zarr-python's v2 default is ".")
CHUNK_KEYS = {"name": "v2", "separator": "/"}


def create_level0(path: Path, size_wh: tuple[int, int], chunk_px: int, dtype: str) -> zarr.Array:
    """Create (or reopen when resuming) the level-0 label array filled with 0."""
    root = zarr.open_group(str(path), mode="a", **FORMAT)
    if "0" in root:
        arr = root["0"]
        if arr.shape == (size_wh[1], size_wh[0]) and arr.dtype == np.dtype(dtype):
            return arr
        del root["0"]
    return root.create_array(
        "0", shape=(size_wh[1], size_wh[0]), chunks=(chunk_px, chunk_px), dtype=dtype,
        fill_value=0, chunk_key_encoding=CHUNK_KEYS,
    )


def open_level0(path: Path) -> zarr.Array:
    return zarr.open_array(str(path / "0"), mode="r+", **FORMAT)


Chunk = tuple[int, int]  # (row, column) index of a chunk


@dataclass(frozen=True)
class LabelInfo:
    """What the label values mean: `colors` and `properties` of the `image-label` metadata."""

    colors: list[dict[str, Any]] | None
    properties: list[dict[str, Any]]

    @classmethod
    def region(cls, class_name: str, color_rgb: Sequence[int]) -> LabelInfo:
        """Region mode: 1 is the class, in its colour."""
        return cls([{"label-value": 1, "rgba": [*map(int, color_rgb), 255]}],
                   [{"label-value": 1, "class": class_name}])

    @classmethod
    def instances(cls, class_name: str, label_values: Sequence[int]) -> LabelInfo:
        """Instances mode: every label value is one object of the class (`object` = its row in
        objects.csv and its feature in the GeoJSON); no fixed colours, so viewers give each
        instance its own."""
        return cls(None, [{"label-value": int(v), "class": class_name, "object": i}
                          for i, v in enumerate(label_values)])


def label_image_attrs(levels: int, working_mpp: float, name: str,
                      labels: LabelInfo) -> dict[str, Any]:
    """`multiscales` + `image-label` of a label image at a store's root, built (and so
    validated) by ome-zarr-models' NGFF 0.4 models."""
    attrs = {
        "multiscales": [{
            "version": "0.4", "name": name, "type": "nearest",
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                     {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": [{"path": str(i), "coordinateTransformations": [
                {"type": "scale", "scale": [working_mpp * 2**i, working_mpp * 2**i]}]}
                for i in range(levels)],
            "metadata": {"method": "numpy subsampling [::2, ::2] (labels are never "
                                   "interpolated)"},
        }],
        "image-label": {"version": "0.4", "properties": labels.properties,
                        **({"colors": labels.colors} if labels.colors is not None else {})},
    }
    model = ImageLabelAttrs.model_validate(attrs)
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def all_chunks(arr: zarr.Array) -> set[Chunk]:
    """Every chunk index of a 2-D array."""
    ch, cw = arr.chunks
    return {(y, x) for y in range(-(-arr.shape[0] // ch)) for x in range(-(-arr.shape[1] // cw))}


def build_pyramid(path: Path, min_px: int, working_mpp: float, name: str,
                  written: set[Chunk] | None = None,
                  labels: LabelInfo | None = None) -> int:
    """Write levels 1..n by 2x subsampling and the NGFF 0.4 metadata; returns the level count.

    `written`: the level-0 chunks the tiles wrote (None = every chunk). Only the chunks of each
    level that cover written ones are computed; the rest stay unwritten and read as the fill
    value 0, so the cost follows the segmented tiles, not the slide's area. `labels` gives the
    `image-label` colours and properties (default: label 1, unnamed, green)."""
    root = zarr.open_group(str(path), mode="a", **FORMAT)
    level0 = root["0"]
    ch, cw = level0.chunks
    if written is None:
        written = all_chunks(level0)
    for key in list(root.array_keys()):
        if key != "0":
            del root[key]
    levels = 1
    source, chunks = level0, written
    while max(source.shape) > min_px:  # the coarsest level fits min_px: a viewer's overview
        shape = (-(-source.shape[0] // 2), -(-source.shape[1] // 2))
        target = root.create_array(str(levels), shape=shape, chunks=(ch, cw),
                                   dtype=level0.dtype, fill_value=0,
                                   chunk_key_encoding=CHUNK_KEYS)
        chunks = {(y // 2, x // 2) for y, x in chunks}
        for y, x in sorted(chunks):  # each target chunk from its 2x2 source chunks
            block = source[2 * y * ch : 2 * (y + 1) * ch, 2 * x * cw : 2 * (x + 1) * cw]
            if block.any():
                sub = block[::2, ::2]
                target[y * ch : y * ch + sub.shape[0], x * cw : x * cw + sub.shape[1]] = sub
        source = target
        levels += 1
    root.attrs.update(label_image_attrs(levels, working_mpp, name,
                                        labels or LabelInfo.region("object", (0, 180, 80))))
    return levels


def finest_level_within(path: Path, levels: int, max_px: int) -> int:
    """The finest of a store's `levels` whose longer side is at most `max_px` (else the
    coarsest): a level small enough to read whole."""
    for level in range(levels):
        arr = zarr.open_array(str(Path(path) / str(level)), mode="r", **FORMAT)
        if max(arr.shape) <= max_px:
            return level
    return levels - 1


def read_level(path: Path, level: int) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(path) / str(level)), mode="r", **FORMAT)[:])
