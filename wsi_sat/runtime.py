"""Where work runs: the Dask client (local cluster, existing scheduler, or SLURM through
dask-jobqueue), the per-worker model cache (models load once per worker, never per tile) and
the worker's lanes.

Lanes: a worker runs `runtime.lanes` batches of tiles at once, on as many threads that share its
models and split its CPU cores between them (a Dask worker's task threads; the in-process run's
thread pool). A batch's per-tile SAT after the encoder is mostly single-threaded (matching,
prompts, clean-up, polygons), so with one lane a core idles for it, and on a GPU the GPU idles;
with two, one lane's SAT runs beside the other's encoder pass. On a 2-core CPU two one-thread
encoder passes side by side are also faster than one two-thread pass (MobileSAM, 1024² input:
1.06-1.10 s against 1.18-1.41 s per image, measured; OpenMP's team synchronises after every
operation). Each lane holds its own encoder activations (~1 GB per 1024² tile on a CPU).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wsi_sat.allocator import SHARED_ARENA_TUNABLE, worker_environ
from wsi_sat.config import Config
from wsi_sat.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Filled at run time in each worker process (never at import): config JSON → Segmenter, and
# the CPU cores a local cluster gave this worker.
_SEGMENTERS: dict[str, Any] = {}
_CPU_SHARE: dict[str, int] = {}
_LOAD_LOCK = threading.Lock()  # lanes: the first batches of a worker load the models once


def segmenter_for(config: Config) -> Any:
    """The worker's Segmenter for this config, loaded on first use."""
    key = config.model_dump_json()
    with _LOAD_LOCK:
        if key not in _SEGMENTERS:
            from wsi_sat.sat.segment import Segmenter

            _SEGMENTERS.clear()  # one model set per worker
            _SEGMENTERS[key] = Segmenter.from_config(config)
        return _SEGMENTERS[key]


def register_segmenter(config: Config, segmenter: Any) -> None:
    """Let in-process runs reuse the Segmenter the reference was prepared with."""
    _SEGMENTERS[config.model_dump_json()] = segmenter


def resolve_lanes(lanes: int, cores: int) -> int:
    """`runtime.lanes`, 0 = auto: two lanes where there are at least two cores to share."""
    return lanes if lanes > 0 else (2 if cores >= 2 else 1)


def available_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_share() -> int:
    """CPU cores of this worker process: what a local cluster gave it, else OMP_NUM_THREADS
    (SLURM jobs export their share), else the CPUs it may run on."""
    if "cores" in _CPU_SHARE:
        return _CPU_SHARE["cores"]
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def worker_lanes() -> int | None:
    """The task threads (lanes) of the Dask worker this runs in; None outside a worker."""
    try:
        from dask.distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def lane_threads(config: Config, lanes: int, cores: int = 0) -> int:
    """torch CPU threads of one lane: `runtime.threads` (else `cores`, else this worker's
    share) split evenly between the lanes, for the whole run (a lane that took more cores
    whenever the others paused would oversubscribe them as soon as they resumed)."""
    return max(1, (config.runtime.threads or cores or cpu_share()) // max(1, lanes))


def local_lanes(config: Config) -> tuple[int, int]:
    """Lanes of a run in this process and torch CPU threads per lane, over this thread's torch
    threads (or `runtime.threads`)."""
    import torch

    cores = torch.get_num_threads()
    lanes = resolve_lanes(config.runtime.lanes, config.runtime.threads or cores)
    return lanes, lane_threads(config, lanes, cores)


def run_in_lanes(fn: Callable[[T], R], items: Iterable[T], lanes: int,
                 cancel: threading.Event | None = None) -> Iterator[R]:
    """fn over items on `lanes` threads (one lane: in the calling thread), results as they
    complete; the first error cancels what has not started and is raised here. When this
    stops early (an error, Ctrl-C in the caller) `cancel` is set before the running items are
    waited for: items that check it can stop at their next step instead of finishing."""
    if lanes <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(lanes, thread_name_prefix="wsi-sat-lane") as pool:
        pending: set[Future[R]] = {pool.submit(fn, item) for item in items}
        try:
            while pending:
                # FIRST_COMPLETED: results (and the progress bar) as they come, and the
                # first error as soon as its item ends (FIRST_EXCEPTION waits for all
                # items unless one fails)
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()
            if pending and cancel is not None:
                cancel.set()


def load_cluster_spec(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"cluster file '{path}' not found; see examples/slurm.yaml")
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict) or "slurm" not in spec:
        raise ConfigError(f"cluster file '{path}' needs a 'slurm:' section; see examples/slurm.yaml")
    return spec


def slurm_cluster(spec: dict[str, Any], shared_arena: bool = True, lanes: int = 0) -> Any:
    """A SLURMCluster from the cluster file's `slurm:` section. `cores` is what each job
    books (`job_cpu`, unless given); each worker process runs `lanes` task threads (0 = auto,
    see `resolve_lanes`) and gets its share of the cores in OMP_NUM_THREADS. With
    `shared_arena` (`runtime.keep_freed_memory`) the job script also exports the glibc tunable
    that keeps the worker's threads on the main malloc arena (see wsi_sat.allocator)."""
    from dask_jobqueue import SLURMCluster

    kwargs = dict(spec["slurm"])
    processes = int(kwargs.get("processes") or 1)
    job_cpu = int(kwargs.get("job_cpu") or kwargs.get("cores") or 1)
    share = max(1, job_cpu // processes)
    kwargs["job_cpu"] = job_cpu
    kwargs["cores"] = resolve_lanes(lanes, share) * processes  # dask worker --nthreads
    prologue = list(kwargs.get("job_script_prologue") or [])
    prologue.append(f"export OMP_NUM_THREADS={share}")
    if shared_arena:
        prologue.append('export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}'
                        f'{SHARED_ARENA_TUNABLE}"')
    kwargs["job_script_prologue"] = prologue
    return SLURMCluster(**kwargs)


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
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if cluster_file:
        spec = load_cluster_spec(cluster_file)
        cluster = slurm_cluster(spec, shared_arena, lanes)
        cluster.scale(jobs=int(spec.get("jobs", 1)))
        with cluster, Client(cluster) as client:
            yield client
        return
    threads = max(1, available_cores() // workers)
    # Dask's nanny pins OMP/MKL/OpenBLAS to 1 thread before a worker starts; give each worker
    # its share of the cores instead (1 worker on 2 cores ran at half speed with the default)
    # and its MALLOC_TRIM_THRESHOLD_=65536 returns every freed activation to the OS, so
    # each encoder pass faults its pages in again (4.2 s instead of 2.5 s per tile on 2 cores);
    # tasks run on a worker thread, which needs glibc's shared-arena tunable from the start
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ",
                                                {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    environ.update({k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                         "OPENBLAS_NUM_THREADS")})
    if shared_arena:
        environ.update(worker_environ(os.environ))
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=workers, threads_per_worker=resolve_lanes(lanes, threads),
                         processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        # the share itself too: the environment may hold an earlier cluster's (Dask's nanny
        # copies its pre-spawn environment into this process, and existing variables win)
        client.run(_set_cpu_share, threads)
        yield client


def _set_cpu_share(cores: int) -> None:
    _CPU_SHARE["cores"] = cores
