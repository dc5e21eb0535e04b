"""Single-channel 0/255 PNG masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsi_sat.writers.atomic import write_atomic


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    data = np.where(mask.astype(bool), 255, 0).astype(np.uint8)
    write_atomic(Path(path), lambda tmp: Image.fromarray(data, mode="L").save(tmp, format="PNG"))


def write_labels_png(path: Path, labels: np.ndarray) -> None:
    """Instance labels as a 16-bit PNG (0 = background, 1..N = objects)."""
    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{int(labels.max())} objects do not fit a 16-bit labels PNG")
    data = labels.astype(np.uint16)
    write_atomic(Path(path), lambda tmp: Image.fromarray(data).save(tmp, format="PNG"))
