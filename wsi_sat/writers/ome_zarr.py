"""OME-Zarr (NGFF 0.4, zarr v2 format) label pyramid of the slide's mask.

Layout of `<slide>.ome.zarr/`: the root group is a multiscale label image (`multiscales` +
`image-label` metadata); `0/` is at the working resolution (axes y, x; scale in µm), each further
level halves it (labels are subsampled, never interpolated). Level-0 chunks are the tile cores,
so every tile writes its own chunks and no two tasks touch the same chunk.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
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


def build_pyramid(path: Path, min_px: int, working_mpp: float, name: str,
                  mapping: dict[int, int] | None = None) -> int:
    """Write levels 1..n by 2x subsampling and the NGFF 0.4 metadata; returns the level count.

    `mapping` (instance label → merged label) is applied to level 0 first."""
    root = zarr.open_group(str(path), mode="a", **FORMAT)
    level0 = root["0"]
    if mapping:
        _relabel(level0, mapping)
    for key in list(root.array_keys()):
        if key != "0":
            del root[key]
    levels = 1
    current = da.from_zarr(level0)
    while max(current.shape) >= 2 * min_px:
        current = current[::2, ::2].rechunk(level0.chunks)
        target = root.create_array(str(levels), shape=current.shape, chunks=level0.chunks,
                                   dtype=level0.dtype, fill_value=0)
        da.store(current, target, lock=False, compute=True)
        current = da.from_zarr(target)
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
            {"label-value": 1, "rgba": [0, 180, 80, 255]}]},
    })
    return levels


def _relabel(arr: zarr.Array, mapping: dict[int, int]) -> None:
    keys = np.array(sorted(mapping), dtype=np.int64)
    values = np.array([mapping[k] for k in keys], dtype=np.int64)
    ch = arr.chunks[0]
    for y in range(0, arr.shape[0], ch):
        for x in range(0, arr.shape[1], arr.chunks[1]):
            block = arr[y : y + ch, x : x + arr.chunks[1]]
            if not block.any():
                continue
            flat = block.astype(np.int64).ravel()
            idx = np.searchsorted(keys, flat)
            idx = np.clip(idx, 0, len(keys) - 1)
            hit = keys[idx] == flat
            flat[hit] = values[idx[hit]]
            arr[y : y + ch, x : x + arr.chunks[1]] = flat.reshape(block.shape).astype(block.dtype)


def read_level(path: Path, level: int) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(path) / str(level)), mode="r", **FORMAT)[:])
