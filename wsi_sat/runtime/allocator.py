"""glibc malloc settings for the image encoder's large, short-lived activations.

A 1024-px tile through MobileSAM's encoder allocates and frees ~1 GB of activations, several
blocks of them 32-64 MiB. With glibc's defaults, blocks above the (dynamic) mmap threshold are
unmapped on free and freed heap tops are trimmed, so every encoder call faults its memory in
afresh, a large share of a tile's time. Fixing the mmap threshold at its maximum (32 MiB) is not
enough — the encoder's 64 MiB blocks still go through mmap — so `keep_freed_memory` turns mmap
off (`M_MMAP_MAX` 0: every block comes from the heap) and trimming off: the process keeps its
high-water mark instead of returning it between tiles; freed blocks are reused, not returned,
so peak RSS grows a little (docs/performance.md).

Threads: only the main arena grows without bounds; a thread on a secondary arena (glibc gives
threads their own, with heaps of at most 64 MiB) still gets its 64 MiB blocks by mmap whatever
the settings, and a Dask worker runs tasks on such a thread. `M_ARENA_MAX` 1 here keeps threads started later on the main arena, and
`worker_environ` puts `GLIBC_TUNABLES=glibc.malloc.arena_max=1` into a worker process's
environment so that every one of its threads is (runtime.py, for local clusters and SLURM jobs).
Dask's nanny also sets `MALLOC_TRIM_THRESHOLD_=65536` in its workers; the settings here override
it.

Process-wide, so it is called explicitly when models load (`Segmenter.from_config`, when
`runtime.keep_freed_memory` is on), never at import. A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_OFF = 2**31 - 1  # an int: mallopt takes C ints; 2 GiB of free heap top before trimming
_TOP_PAD = 64 * 2**20  # grow the heap in 64 MiB steps (fewer brk calls)
SHARED_ARENA_TUNABLE = "glibc.malloc.arena_max=1"


def keep_freed_memory() -> bool:
    """Apply the settings above; True when glibc accepted all of them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0), (_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, _TRIM_OFF),
        (_M_TOP_PAD, _TOP_PAD)))
    log.debug("glibc malloc: keep freed memory (%s)", "applied" if ok else "partly refused")
    return ok


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment additions for a worker process that will run the encoder on a thread:
    glibc's tunable that keeps all its threads on the main arena, appended to any tunables
    already in `environ` (glibc reads them only when a process starts)."""
    current = environ.get("GLIBC_TUNABLES", "")
    if SHARED_ARENA_TUNABLE in current.split(":"):
        return {}
    return {"GLIBC_TUNABLES": ":".join(x for x in (current, SHARED_ARENA_TUNABLE) if x)}
