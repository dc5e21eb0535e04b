"""Dask clients for the batches: a local cluster, an existing scheduler, or a batch system
(SLURM, PBS, LSF) through dask-jobqueue (jobqueue.py). Workers started here run `runtime.lanes` task threads each (see lanes.py) and get
`runtime.keep_freed_memory`'s malloc setting (see allocator.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsi_sat.config import Config
from wsi_sat.errors import ConfigError, RunStateError
from wsi_sat.runtime.allocator import worker_environ
from wsi_sat.runtime.jobqueue import jobqueue_cluster, load_cluster_spec, start_jobs
from wsi_sat.runtime.lanes import resolve_lanes
from wsi_sat.runtime.threads import available_cores

log = logging.getLogger(__name__)


def quiet_distributed() -> None:
    """distributed sets its loggers to INFO when imported (after the CLI set them): a run
    prints its scheduler's and workers' life story. Back to warnings, unless -vv."""
    if logging.getLogger("wsi_sat").getEffectiveLevel() > logging.DEBUG:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.worker", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)  # "still alive, killing"


def worker_log_level() -> int:
    """What local workers log: a failed task's exception comes back to the client, which
    reports it once (one line for a user's problem); the workers' own "Compute Failed" and
    cancelled-task messages would repeat it. CRITICAL only, unless -v."""
    return (logging.WARNING if logging.getLogger("wsi_sat").getEffectiveLevel() < logging.INFO
            else logging.CRITICAL)


def connect(address: str) -> Any:
    """A Client of the running scheduler at `address`; a malformed or unreachable address is a
    ConfigError (waiting Dask's `distributed.comm.timeouts.connect`)."""
    from dask.distributed import Client

    try:
        return Client(address)
    except (OSError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"cannot reach the Dask scheduler at '{address}' ({reason}); start "
                          "it or check --scheduler (e.g. tcp://host:8786)") from None


@contextmanager
def dask_client(config: Config, scheduler: str | None = None, cluster_file: Path | None = None
                ) -> Iterator[Any]:
    """A distributed Client, or None for in-process execution (`wsi.workers` 0). Workers it
    starts (local processes, SLURM jobs) run `runtime.lanes` task threads each and get
    `runtime.keep_freed_memory`'s malloc setting; workers of an existing `scheduler` are
    started by the user (their task threads are their lanes)."""
    workers, lanes = config.wsi.workers, config.runtime.lanes
    shared_arena = config.runtime.keep_freed_memory
    if scheduler is None and cluster_file is None and workers == 0:
        yield None
        return
    import dask
    from dask.distributed import Client

    from wsi_sat.runtime.worker_plugin import CpuShare

    quiet_distributed()

    if scheduler:
        with connect(scheduler) as client:
            yield client
        return
    if cluster_file:
        spec = load_cluster_spec(cluster_file)
        cluster = jobqueue_cluster(spec, shared_arena, lanes)
        start_jobs(cluster, spec)
        with cluster, Client(cluster) as client:
            yield client
        return
    threads = max(1, available_cores() // workers)
    # Dask's nanny pins OMP/MKL/OpenBLAS to 1 thread before a worker starts; give each worker
    # its share of the cores instead (one worker would use one core), and drop its
    # MALLOC_TRIM_THRESHOLD_=65536, which returns every freed activation to the OS so that
    # each encoder pass faults its pages in again; tasks run on a worker thread, which needs
    # glibc's shared-arena tunable from the start
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ",
                                                {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    environ.update({k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                         "OPENBLAS_NUM_THREADS")})
    if shared_arena:
        environ.update(worker_environ(os.environ))
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            _local_cluster(workers, resolve_lanes(lanes, threads)) as cluster, \
            Client(cluster) as client:
        # the share itself too: the environment may hold an earlier cluster's (Dask's nanny
        # copies its pre-spawn environment into this process, and existing variables win); as
        # a plugin, so a worker the nanny restarts after a crash gets it as well
        try:
            client.register_plugin(CpuShare(threads), name="wsi-sat-cpu-share")
        except OSError:  # CommClosedError: a worker died meanwhile; its restart gets the plugin
            log.warning("a Dask worker was lost while starting; the nanny restarts it")
        yield client


def _local_cluster(workers: int, threads_per_worker: int) -> Any:
    """A LocalCluster of worker processes; started a second time when a worker process dies
    while it starts (the nanny then gives up on the whole cluster), then a RunStateError."""
    from dask.distributed import LocalCluster

    for attempt in range(2):
        try:
            return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                processes=True, dashboard_address=None,
                                silence_logs=worker_log_level())
        except RuntimeError as exc:  # "Nanny failed to start worker process"
            log.warning("the local Dask workers failed to start (%s)%s", exc,
                        "; trying once more" if attempt == 0 else "")
    raise RunStateError(f"the {workers} local Dask workers failed to start twice (out of "
                        "memory?); run with --workers 0 (in this process) or fewer --workers")
