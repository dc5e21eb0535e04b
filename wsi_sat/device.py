"""Compute-device choice (auto: cuda, then mps, then cpu) and CPU thread count."""

from __future__ import annotations

import logging

import torch

from wsi_sat.errors import DeviceError

log = logging.getLogger(__name__)


def select_device(name: str = "auto", threads: int = 0) -> torch.device:
    """Resolve a device name; an unavailable explicit choice is a DeviceError."""
    if threads > 0:
        torch.set_num_threads(threads)
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu")
    if name == "mps" and not mps_ok:
        raise DeviceError("device 'mps' requested but Apple MPS is not available; use --device cpu")
    if name not in {"cpu", "cuda", "mps"}:
        raise DeviceError(f"unknown device '{name}'; use auto, cpu, cuda or mps")
    return torch.device(name)
