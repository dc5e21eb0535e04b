"""One encoding as a file: the embedding (C, G, G) stored as (G, G, C) at the store's precision
(the encoder's channels-last rows, so a stored tile reads back in the layout matching reads),
with the image's and the encoder input's sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsi_sat.models.sam import Encoded
from wsi_sat.writers.atomic import write_atomic

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def rounded(enc: Encoded, dtype: str) -> Encoded:
    """The encoding as the store keeps it: its embedding rounded to `dtype` and back to float32
    (the same numbers a stored copy reads back as; layout and device kept)."""
    if dtype == "float32":
        return enc
    emb = enc.embedding.to(DTYPES[dtype]).to(torch.float32)
    return Encoded(emb, enc.original_hw, enc.input_hw)


def save_encoding(path: Path, enc: Encoded, dtype: str) -> None:
    """Write `enc` (atomically) at `dtype`."""
    rows = enc.embedding.permute(1, 2, 0).to(DTYPES[dtype]).cpu().numpy()
    header = np.asarray([*enc.original_hw, *enc.input_hw], dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, header, allow_pickle=False)
            np.save(fh, np.ascontiguousarray(rows), allow_pickle=False)

    write_atomic(path, write)


def load_encoding(path: Path, dtype: str, device: torch.device) -> Encoded | None:
    """The encoding in `path` on `device` (float32, channels-last rows), or None when the file
    is missing, torn or of another precision (it is then encoded again)."""
    try:
        with open(path, "rb") as fh:
            header = np.load(fh, allow_pickle=False)
            rows = np.load(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if header.shape != (4,) or rows.ndim != 3 or rows.dtype != np.dtype(dtype):
        return None
    emb = torch.from_numpy(rows).to(device).to(torch.float32).permute(2, 0, 1)
    return Encoded(emb, (int(header[0]), int(header[1])), (int(header[2]), int(header[3])))
