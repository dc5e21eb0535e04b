"""The label pyramid: levels equal numpy subsampling; only written chunks are computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from wsi_sat.writers.ome_zarr import build_pyramid, create_level0, read_level


def _level0(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "s.ome.zarr"
    arr = create_level0(path, (1000, 700), 64, "uint32")  # (w, h): 11 x 16 chunks, ragged edges
    data = np.zeros((700, 1000), np.uint32)
    data[70:190, 130:260] = 5  # chunks (1..2, 2..4)
    data[650:700, 900:1000] = 9  # the ragged corner chunk (10, 14..15)
    arr[:] = data
    return path, data


def test_levels_are_numpy_subsampling(tmp_path: Path) -> None:
    path, data = _level0(tmp_path)
    written = {(y, x) for y in range(1, 3) for x in range(2, 5)} | {(10, 14), (10, 15)}
    levels = build_pyramid(path, 64, 0.5, "s", None, written)
    assert levels == 4  # 1000 → 500 → 250 → 125 (< 128 stops)
    expect = data
    for level in range(1, levels):
        expect = expect[::2, ::2]
        assert np.array_equal(read_level(path, level), expect)
    ms = zarr.open_group(str(path), mode="r").attrs["multiscales"][0]
    assert [d["coordinateTransformations"][0]["scale"][0] for d in ms["datasets"]] == \
        [0.5, 1.0, 2.0, 4.0]


def test_only_written_chunks_are_computed_and_relabelled(tmp_path: Path) -> None:
    path, data = _level0(tmp_path)
    build_pyramid(path, 64, 0.5, "s", {5: 3, 9: 4}, {(10, 14), (10, 15)})
    level0, level1 = read_level(path, 0), read_level(path, 1)
    assert (level0[650:, 900:] == 4).all()
    assert (level0[70:190, 130:260] == 5).all()  # not in `written`: left alone
    assert not level1[:150].any()
    assert (level1[325:350, 450:500] == 4).all()
