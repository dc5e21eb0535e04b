"""The per-worker model cache: a Dask worker loads the models once and reuses them for every
batch it runs (never per tile). Keyed on what decides the loaded weights and their device
(`models` and `runtime`), so batches under another method config reuse the same models.

Filled at run time in each worker process, never at import; runs in this process pass their
Segmenter explicitly (wsi_sat.api) and never touch it.
"""

from __future__ import annotations

import threading

from wsi_sat.config import Config
from wsi_sat.segmenter import Segmenter

_CACHE: dict[str, Segmenter] = {}
_LOCK = threading.Lock()  # lanes: the first batches of a worker load the models once


def _key(config: Config) -> str:
    return config.models.model_dump_json() + config.runtime.model_dump_json()


def worker_segmenter(config: Config) -> Segmenter:
    """This worker's models under `config`, loaded on first use (one model set per worker)."""
    key = _key(config)
    with _LOCK:
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = Segmenter.from_config(config)
        return _CACHE[key].with_config(config)
