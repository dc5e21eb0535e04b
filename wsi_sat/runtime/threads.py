"""CPU threads: the cores this process may use, torch's intra-op threads, numpy's BLAS limit.

torch's thread count is set here only (OpenMP: per calling thread), through `torch_threads`.
numpy's / scipy's BLAS is held to one thread while any lane runs the per-image SAT (and over a whole
slide run): it makes many small BLAS calls (self-training's logistic fit, the similarity blocks)
that a multi-threaded OpenBLAS loses up to 5x on to thread hand-offs against torch's and OpenCV's
pools, and after each such call OpenBLAS's idle workers spin (measured: ~80 CPU core-ms per tile
of a dense slide, burnt by the workers of numpy's OpenBLAS while the lanes ran).

OpenBLAS's thread count is process-wide, and threadpoolctl (>= 3.8) lets one Python thread at a
time control it: a limit set by a thread while another holds control is silently ignored, and
control passes only when the thread that set a limit restores it. So the limit is set and
restored on one thread the limiter owns, whichever lane comes in first or leaves last.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch
from threadpoolctl import ThreadpoolController

log = logging.getLogger(__name__)

# the CPU cores a local Dask cluster gave this worker process (set in the worker at run time)
_CPU_SHARE: dict[str, int] = {}


def available_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_cpu_share(cores: int) -> None:
    """Record the cores a local cluster gave this worker (called in the worker)."""
    _CPU_SHARE["cores"] = cores


def cpu_share() -> int:
    """CPU cores of this worker process: what a local cluster gave it, else OMP_NUM_THREADS
    (SLURM jobs export their share), else the CPUs it may run on."""
    if "cores" in _CPU_SHARE:
        return _CPU_SHARE["cores"]
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads of the calling thread (0: unchanged); the one place that sets
    them."""
    if threads > 0:
        torch.set_num_threads(threads)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads of the calling thread set to `threads` (0: unchanged) and
    restored afterwards (where the build's thread pool is process-wide)."""
    before = torch.get_num_threads()
    set_torch_threads(threads)
    try:
        yield
    finally:
        if threads > 0:
            set_torch_threads(before)


class BlasLimiter:
    """numpy's BLAS on one thread while any user is inside (the limit is process-wide:
    applied when the first user comes in, restored when the last one leaves, both on the
    limiter's own thread so that threadpoolctl honours them whichever threads the users are;
    see the module's docstring)."""

    def __init__(self) -> None:
        self._controller = ThreadpoolController()
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None
        self._owner: ThreadPoolExecutor | None = None

    def _limit(self) -> None:  # on the owner thread
        self._limiter = self._controller.limit(limits=1, user_api="blas")
        held = [lib["num_threads"] for lib in self._controller.select(user_api="blas").info()]
        if any(n != 1 for n in held):  # another thread of this process controls OpenBLAS
            log.debug("BLAS held at %s threads, not 1: another thread controls it", held)

    def _restore(self) -> None:  # on the owner thread
        self._limiter.restore_original_limits()
        self._limiter = None

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                if self._owner is None:
                    self._owner = ThreadPoolExecutor(1, thread_name_prefix="wsi-sat-blas")
                self._owner.submit(self._limit).result()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._owner is not None:
                    self._owner.submit(self._restore).result()
