"""OME-Zarr (NGFF 0.4, zarr v2 format) label pyramid of the slide's mask.

Layout of `<slide>.ome.zarr/`: the root group is a multiscale label image (`multiscales` +
`image-label` metadata); `0/` is at the working resolution (axes y, x; scale in µm), each further
level halves it (labels are subsampled, never interpolated). Level-0 chunks are the tile cores,
so every tile writes its own chunks and no two tasks touch the same chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

FORMAT = dict(zarr_format=2)


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
        fill_value=0,
    )


def open_level0(path: Path) -> zarr.Array:
    return zarr.open_array(str(path / "0"), mode="r+", **FORMAT)


Chunk = tuple[int, int]  # (row, column) index of a chunk


def build_pyramid(path: Path, min_px: int, working_mpp: float, name: str,
                  mapping: dict[int, int] | None = None,
                  written: set[Chunk] | None = None,
                  color_rgb: tuple[int, int, int] | list[int] = (0, 180, 80)) -> int:
    """Write levels 1..n by 2x subsampling and the NGFF 0.4 metadata; returns the level count.

    `written`: the level-0 chunks the tiles wrote (None = every chunk). Only the chunks of each
    level that cover written ones are computed; the rest stay unwritten and read as the fill
    value 0, so the cost follows the segmented tiles, not the slide's area.
    `mapping` (instance label → merged label) is applied to level 0 first; `color_rgb` is the
    label colour in the `image-label` metadata."""
    root = zarr.open_group(str(path), mode="a", **FORMAT)
    level0 = root["0"]
    ch, cw = level0.chunks
    if written is None:
        written = {(y, x) for y in range(-(-level0.shape[0] // ch))
                   for x in range(-(-level0.shape[1] // cw))}
    if mapping:
        _relabel(level0, mapping, written)
    for key in list(root.array_keys()):
        if key != "0":
            del root[key]
    levels = 1
    source, chunks = level0, written
    while max(source.shape) >= 2 * min_px:
        shape = (-(-source.shape[0] // 2), -(-source.shape[1] // 2))
        target = root.create_array(str(levels), shape=shape, chunks=(ch, cw),
                                   dtype=level0.dtype, fill_value=0)
        chunks = {(y // 2, x // 2) for y, x in chunks}
        for y, x in sorted(chunks):  # each target chunk from its 2x2 source chunks
            block = source[2 * y * ch : 2 * (y + 1) * ch, 2 * x * cw : 2 * (x + 1) * cw]
            if block.any():
                sub = block[::2, ::2]
                target[y * ch : y * ch + sub.shape[0], x * cw : x * cw + sub.shape[1]] = sub
        source = target
        levels += 1
    datasets = [
        {"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [working_mpp * 2**i, working_mpp * 2**i]}]}
        for i in range(levels)
    ]
    root.attrs.update({
        "multiscales": [{
            "version": "0.4", "name": name,
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                     {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": datasets,
            "metadata": {"method": "numpy subsampling [::2, ::2] (labels)"},
        }],
        "image-label": {"version": "0.4", "colors": [
            {"label-value": 1, "rgba": [*map(int, color_rgb), 255]}]},
    })
    return levels


def _relabel(arr: zarr.Array, mapping: dict[int, int], chunks: set[Chunk]) -> None:
    keys = np.array(sorted(mapping), dtype=np.int64)
    values = np.array([mapping[k] for k in keys], dtype=np.int64)
    ch, cw = arr.chunks
    for cy, cx in sorted(chunks):
        y, x = cy * ch, cx * cw
        block = arr[y : y + ch, x : x + cw]
        if not block.any():
            continue
        flat = block.astype(np.int64).ravel()
        idx = np.searchsorted(keys, flat)
        idx = np.clip(idx, 0, len(keys) - 1)
        hit = keys[idx] == flat
        flat[hit] = values[idx[hit]]
        arr[y : y + ch, x : x + cw] = flat.reshape(block.shape).astype(block.dtype)


def read_level(path: Path, level: int) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(path) / str(level)), mode="r", **FORMAT)[:])
