"""`<slide>.run.json`: what was run, on what, with which models, and how long each stage took."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat import __version__
from wsi_sat.writers.atomic import write_atomic

_PACKAGES = ("torch", "numpy", "zarr", "ome-zarr", "tiffslide", "openslide-python", "dask",
             "shapely", "mobilesam-mirror", "segment-anything", "timm")


def versions() -> dict[str, str]:
    out = {"wsi-sat": __version__, "python": sys.version.split()[0],
           "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_info(segmenter: Any) -> dict[str, Any]:
    """The models a run used: names, weight files and their sha256."""
    engine = segmenter.engine
    return {"sam": {"name": engine.spec.name, "weights": str(engine.weights_path),
                    "sha256": engine.weights_sha256},
            "features": {"name": segmenter.config.models.features.name,
                         "sha256": getattr(segmenter.backbone, "weights_sha256", None)}}


def array_hash(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def write_run_json(path: Path, record: dict[str, Any]) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(record, indent=2, default=str))

    write_atomic(Path(path), write)
