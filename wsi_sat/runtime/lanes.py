"""Lanes: a worker runs `runtime.lanes` batches of tiles at once, on threads that share its
models and split its CPU cores between them (a Dask worker's task threads; the in-process run's
thread pool).

A batch's per-tile SAT after the encoder is mostly single-threaded (matching, prompts, clean-up,
polygons), so with one lane a core idles for it, and on a GPU the GPU idles; with two, one
lane's SAT runs beside the other's encoder pass. On a 2-core CPU two one-thread encoder passes
side by side are also faster than one two-thread pass (OpenMP's team synchronises after every
operation; see docs/performance.md). Each lane holds its own encoder activations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

import torch

from wsi_sat.config import RuntimeConfig
from wsi_sat.runtime.threads import cpu_share
from wsi_sat.sat import ONE_THREAD, Workers

T = TypeVar("T")
R = TypeVar("R")


def resolve_lanes(lanes: int, cores: int) -> int:
    """`runtime.lanes`, 0 = auto: two lanes where there are at least two cores to share."""
    return lanes if lanes > 0 else (2 if cores >= 2 else 1)


def worker_lanes() -> int | None:
    """The task threads (lanes) of the Dask worker this runs in; None outside a worker."""
    try:
        from dask.distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def lane_threads(rcfg: RuntimeConfig, lanes: int, cores: int = 0) -> int:
    """torch CPU threads of one lane: `runtime.threads` (else `cores`, else this worker's
    share) split evenly between the lanes, for the whole run (a lane that took more cores
    whenever the others paused would oversubscribe them as soon as they resumed)."""
    return max(1, (rcfg.threads or cores or cpu_share()) // max(1, lanes))


def local_lanes(rcfg: RuntimeConfig) -> tuple[int, int]:
    """Lanes of a run in this process and torch CPU threads per lane, over this thread's torch
    threads (or `runtime.threads`)."""
    cores = torch.get_num_threads()
    lanes = resolve_lanes(rcfg.lanes, rcfg.threads or cores)
    return lanes, lane_threads(rcfg, lanes, cores)


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


@contextmanager
def lent_threads(count: int, name: str = "wsi-sat-work") -> Iterator[Workers]:
    """`count` threads lent to the method (`wsi_sat.sat.engine.Workers`) while inside; one or
    fewer: the calling thread alone."""
    if count <= 1:
        yield ONE_THREAD
        return
    with ThreadPoolExecutor(count, thread_name_prefix=name) as pool:
        yield Workers(count, pool.map)
