"""Reference views encoded once: the engine, with each image it encodes kept on disk under a hash
of its pixels, the encoder scale and the encoder (`<dir>/<sha256>.npy`). A rerun that adds
examples (corrections drawn on a result slide) encodes only the new crops and their views;
the rest is read back, at the store's precision like every encoding of a slide run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat.encodings.arrays import load_encoding, rounded, save_encoding
from wsi_sat.models.sam import Encoded, SamEngine


class ViewEncodings:
    """A `wsi_sat.sat.Engine` whose `encode` reuses the encodings kept in `folder` (None: keeps
    nothing, only rounds to the store's precision). `encoder_key` names the encoder (weights,
    input size, precision): encodings of another encoder are never read."""

    def __init__(self, engine: SamEngine, folder: Path | None, dtype: str,
                 encoder_key: str) -> None:
        self.engine, self.folder, self.dtype, self.encoder_key = engine, folder, dtype, encoder_key
        self.encoded = 0  # images this wrapper sent to the encoder
        self.reused = 0  # images read back from the folder
        self.progress: Any = None  # a runtime.progress.Progress counting the images
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __getattr__(self, name: str) -> Any:  # decode, upscale, device, input_px, ...
        return getattr(self.engine, name)

    def _path(self, image: np.ndarray, scale: float | None) -> Path:
        assert self.folder is not None
        digest = hashlib.sha256()
        digest.update(f"{image.shape}|{image.dtype}|{scale!r}|{self.encoder_key}|{self.dtype}"
                      .encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return self.folder / f"{digest.hexdigest()}.npy"

    def encode(self, images: list[np.ndarray], scale: float | None = None) -> list[Encoded]:
        paths = [self._path(im, scale) for im in images] if self.folder is not None else None
        known = ([load_encoding(p, self.dtype, self.engine.device) for p in paths]
                 if paths is not None else [None] * len(images))
        todo = [i for i, e in enumerate(known) if e is None]
        fresh = self.engine.encode([images[i] for i in todo], scale) if todo else []
        for i, enc in zip(todo, fresh):
            if paths is not None:
                save_encoding(paths[i], enc, self.dtype)
            known[i] = rounded(enc, self.dtype)
        self.encoded += len(todo)
        self.reused += len(images) - len(todo)
        if self.progress is not None:
            self.progress.update(len(images))
        return [e for e in known if e is not None]
