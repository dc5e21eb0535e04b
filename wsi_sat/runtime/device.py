"""Compute-device choice (auto: cuda, then mps, then cpu), one GPU per Dask worker, and the
image encoder's autocast precision."""

from __future__ import annotations

import logging

import torch

from wsi_sat.errors import DeviceError

log = logging.getLogger(__name__)


def worker_gpu(count: int) -> int:
    """The GPU of this Dask worker: one worker per GPU, by worker name (0, 1, ...) when the
    names are numbers (LocalCluster), else 0; outside a worker 0."""
    if count <= 1:
        return 0
    try:
        from dask.distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    return int(name) % count if str(name).isdigit() else 0


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of the image encoder, or None for plain fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def select_device(name: str = "auto") -> torch.device:
    """Resolve a device name; an unavailable explicit choice is a DeviceError. With several
    GPUs, each Dask worker takes its own (see `worker_gpu`)."""
    if name in {"auto", "cuda"} and torch.cuda.is_available():
        return torch.device("cuda", worker_gpu(torch.cuda.device_count()))
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
