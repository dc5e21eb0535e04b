"""Where work runs: the Dask client (local cluster, existing scheduler, or SLURM through
dask-jobqueue) and the per-worker model cache (models load once per worker, never per tile)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from wsi_sat.config import Config
from wsi_sat.errors import ConfigError

log = logging.getLogger(__name__)

# Filled at run time in each worker process (never at import): config JSON → Segmenter.
_SEGMENTERS: dict[str, Any] = {}


def segmenter_for(config: Config) -> Any:
    """The worker's Segmenter for this config, loaded on first use."""
    key = config.model_dump_json()
    if key not in _SEGMENTERS:
        from wsi_sat.sat.segment import Segmenter

        _SEGMENTERS.clear()  # one model set per worker
        _SEGMENTERS[key] = Segmenter.from_config(config)
    return _SEGMENTERS[key]


def register_segmenter(config: Config, segmenter: Any) -> None:
    """Let in-process runs reuse the Segmenter the reference was prepared with."""
    _SEGMENTERS[config.model_dump_json()] = segmenter


def load_cluster_spec(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"cluster file '{path}' not found; see examples/slurm.yaml")
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict) or "slurm" not in spec:
        raise ConfigError(f"cluster file '{path}' needs a 'slurm:' section; see examples/slurm.yaml")
    return spec


def slurm_cluster(spec: dict[str, Any]) -> Any:
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(**spec["slurm"])


@contextmanager
def dask_client(workers: int, scheduler: str | None, cluster_file: Path | None
                ) -> Iterator[Any]:
    """A distributed Client, or None for in-process execution (workers == 0)."""
    if scheduler is None and cluster_file is None and workers == 0:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if cluster_file:
        spec = load_cluster_spec(cluster_file)
        cluster = slurm_cluster(spec)
        cluster.scale(jobs=int(spec.get("jobs", 1)))
        with cluster, Client(cluster) as client:
            yield client
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env={"OMP_NUM_THREADS": str(threads)}) as cluster, \
            Client(cluster) as client:
        yield client
