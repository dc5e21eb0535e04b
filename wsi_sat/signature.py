"""The run key: what a slide's outputs are a function of. A hash of the slide's identity, the
reference pixels and masks (and negatives), every config key that changes a result, the model
weights and the package version. Every shard, the `.partial` store and run.json carry it;
`--resume` reuses only what carries the same key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wsi_sat import __version__
from wsi_sat.config import Config, config_to_dict

# keys that decide where and how fast work runs, never what it computes
_SCHEDULING = {("runtime", "threads"), ("runtime", "lanes"), ("runtime", "keep_freed_memory"),
               ("runtime", "stall_timeout_s"), ("runtime", "worker_losses"),
               ("wsi", "workers"), ("wsi", "keep_encodings"), ("wsi", "encodings_dir")}


def slide_identity(slide_path: Path) -> dict[str, Any]:
    """Resolved path, size and modification time of the slide file (every file of a DICOM
    folder): a changed or replaced file is another slide."""
    path = Path(slide_path).resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return {"path": str(path),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def slide_sha256(slide_path: Path) -> str:
    """sha256 of the slide's bytes (every file of a DICOM folder, by name): its content, not
    its path or time stamp."""
    path = Path(slide_path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}|{f.stat().st_size}|".encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 23):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 (hex) of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encoder_identity(models: dict[str, Any], input_px: int, precision: str) -> dict[str, Any]:
    """What an encoding depends on besides its pixels: the weights, the input size and the
    precision the encoder ran at."""
    return {"weights": model_digests(models), "input_px": input_px, "precision": precision,
            "version": __version__}


def result_config(config: Config) -> dict[str, Any]:
    """The resolved config without the scheduling keys."""
    data = config_to_dict(config)
    for section, key in _SCHEDULING:
        data[section].pop(key, None)
    return data


def reference_identity(reference_info: dict[str, Any]) -> dict[str, Any]:
    """What identifies a reference in a key: its pixel hash, pixel size, negatives' hash."""
    return {"sha256": reference_info.get("sha256"), "mpp": reference_info.get("mpp"),
            "negatives": (reference_info.get("negatives") or {}).get("sha256")}


def model_digests(models: dict[str, Any]) -> dict[str, Any]:
    """The weights' sha256 per model (run.json's `models`)."""
    return {k: v.get("sha256") for k, v in models.items()}


def sha256_json(obj: Any) -> str:
    """sha256 (hex) of `obj` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_key(slide_path: Path, reference_info: dict[str, Any], config: Config,
            models: dict[str, Any], slide_mpp: float | None, working_mpp: float) -> str:
    """sha256 (hex) of everything a slide's outputs depend on."""
    return sha256_json({"slide": slide_identity(slide_path), "slide_mpp": slide_mpp,
                        "working_mpp": working_mpp,
                        "reference": reference_identity(reference_info),
                        "config": result_config(config), "models": model_digests(models),
                        "version": __version__})
