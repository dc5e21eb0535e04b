"""A slide's tile encodings on disk, for reruns: `<dir>/<stem>/` holds `store.json` (its key)
and one `t<tile index>.npy` per encoded tile.

The key is a hash of what an encoding depends on: the slide's content (sha256 of its bytes, not
its path), the working resolution and the tile grid (tile side, overlap), the encoder (weights,
input size, precision) and the store's precision. A store under another key is emptied before
any tile is written (the tiles are encoded afresh): encodings of two slides, models or grids are
never mixed. Tiles are written one file each, atomically, so lanes and Dask workers share a
store and a killed run keeps what it encoded."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from wsi_sat.config import WsiConfig
from wsi_sat.encodings.arrays import load_encoding, rounded, save_encoding
from wsi_sat.models.sam import Encoded
from wsi_sat.signature import sha256_json
from wsi_sat.writers.atomic import write_atomic

log = logging.getLogger(__name__)

STORE_FILE = "store.json"


def encodings_root(wcfg: WsiConfig, out_dir: Path) -> Path | None:
    """Where a run into `out_dir` keeps encodings (`wsi.encodings_dir`, else
    `<out_dir>/encodings`); None when `wsi.keep_encodings` is off."""
    if not wcfg.keep_encodings:
        return None
    return Path(wcfg.encodings_dir) if wcfg.encodings_dir else Path(out_dir) / "encodings"


def tiles_key(slide_sha256: str, working_mpp: float, tile_px: int, overlap_px: int,
              encoder: dict[str, Any], dtype: str) -> str:
    """The key of a slide's tile encodings (see the module docstring)."""
    return sha256_json({"slide_sha256": slide_sha256, "working_mpp": working_mpp,
                        "tile_px": tile_px, "overlap_px": overlap_px, "encoder": encoder,
                        "dtype": dtype})


class TileEncodings:
    """Tile encodings of one slide at the store's precision; `folder` None keeps nothing on
    disk (every tile is encoded, and rounded as a stored one would be)."""

    def __init__(self, folder: Path | None, key: str, dtype: str) -> None:
        self.folder, self.key, self.dtype = folder, key, dtype
        if folder is not None:
            self._claim(folder)

    def _claim(self, folder: Path) -> None:
        """Empty a store written under another key (or none), then mark it with this one."""
        meta = folder / STORE_FILE
        try:
            found = json.loads(meta.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            found = None
        if found == self.key:
            return
        if folder.exists():
            log.info("tile encodings in %s are of another slide, model or grid: encoding afresh",
                     folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_atomic(meta, lambda p: p.write_text(json.dumps({"key": self.key,
                                                              "dtype": self.dtype})))

    def _path(self, index: int) -> Path:
        assert self.folder is not None
        return self.folder / f"t{index}.npy"

    def get(self, index: int, device: torch.device) -> Encoded | None:
        """Tile `index`'s stored encoding on `device`, or None."""
        if self.folder is None:
            return None
        return load_encoding(self._path(index), self.dtype, device)

    def keep(self, index: int, enc: Encoded) -> Encoded:
        """A fresh encoding of tile `index`: stored (when on disk), and returned as the method
        is to use it (at the store's precision)."""
        if self.folder is not None:
            save_encoding(self._path(index), enc, self.dtype)
        return rounded(enc, self.dtype)
