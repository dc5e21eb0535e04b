"""Single-channel 0/255 PNG masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsi_sat.writers.atomic import write_atomic


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    data = np.where(mask.astype(bool), 255, 0).astype(np.uint8)
    write_atomic(Path(path), lambda tmp: Image.fromarray(data, mode="L").save(tmp, format="PNG"))
