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
    import dask
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
    # Dask's nanny pins OMP/MKL/OpenBLAS to 1 thread before a worker starts; give each worker
    # its share of the cores instead (1 worker on 2 cores ran at half speed with the default)
    # and its MALLOC_TRIM_THRESHOLD_=65536 returns every freed activation to the OS, so
    # each encoder pass faults its pages in again (4.2 s instead of 2.5 s per tile on 2 cores)
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ",
                                                {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    environ.update({k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                         "OPENBLAS_NUM_THREADS")})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(_set_threads, threads)  # also when an earlier cluster set the environment
        yield client


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
