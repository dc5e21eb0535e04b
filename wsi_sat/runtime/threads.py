"""CPU threads: the cores this process may use, torch's intra-op threads, numpy's BLAS limit.

torch's thread count is set here only (OpenMP: per calling thread), through `torch_threads`.
numpy's / scipy's BLAS is held to one thread while any lane runs the per-image SAT (and over a whole
slide run): it makes many small BLAS calls (self-training's logistic fit, the similarity blocks)
that a multi-threaded OpenBLAS loses to thread hand-offs against torch's and OpenCV's pools, and
after each such call OpenBLAS's idle workers spin, burning the cores the lanes need.

OpenBLAS's thread count is process-wide, and threadpoolctl (>= 3.8) lets one Python thread at a
time control it: a limit set by a thread while another holds control is silently ignored, and
control passes on only when the thread that set a limit leaves threadpoolctl's context. So the
limit is set and restored on one thread the limiters own, whichever lane comes in first or leaves
last, as a context entered and left (a limit merely restored would keep control on its thread,
and every later limiter's limit would be ignored).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

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


class _BlasState:
    """The process's one BLAS limit: users counted across every limiter, one owner thread."""

    lock = threading.Lock()
    users = 0
    held: ExitStack | None = None
    owner: ThreadPoolExecutor | None = None
    pid = 0  # the process the owner thread runs in (a forked child starts its own)


class BlasLimiter:
    """numpy's BLAS on one thread while any user is inside. The limit is process-wide, so the
    count of users is too (shared by every limiter of the process: the segmenters of several
    runs or slides in flight): the limit is applied when the first user comes in and restored
    when the last one leaves, both on one owner thread, entered and left as threadpoolctl's
    context so that control passes back when restored (see the module's docstring)."""

    def __init__(self) -> None:
        self._controller = ThreadpoolController()

    def _limit(self) -> None:  # on the owner thread
        held = ExitStack()
        held.enter_context(self._controller.limit(limits=1, user_api="blas"))
        _BlasState.held = held
        now = [lib["num_threads"] for lib in self._controller.select(user_api="blas").info()]
        if any(n != 1 for n in now):  # another thread of this process controls OpenBLAS
            log.debug("BLAS held at %s threads, not 1: another thread controls it", now)

    @staticmethod
    def _restore() -> None:  # on the owner thread
        if _BlasState.held is not None:
            _BlasState.held.close()  # restores the limits and gives up control
            _BlasState.held = None

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        with _BlasState.lock:
            if _BlasState.pid != os.getpid():
                _BlasState.owner, _BlasState.held, _BlasState.users = None, None, 0
                _BlasState.pid = os.getpid()
            if _BlasState.users == 0:
                if _BlasState.owner is None:
                    _BlasState.owner = ThreadPoolExecutor(1, thread_name_prefix="wsi-sat-blas")
                _BlasState.owner.submit(self._limit).result()
            _BlasState.users += 1
        try:
            yield
        finally:
            with _BlasState.lock:
                _BlasState.users -= 1
                if _BlasState.users == 0 and _BlasState.owner is not None:
                    _BlasState.owner.submit(self._restore).result()
