"""glibc malloc settings for the image encoder's large, short-lived activations.

A 1024-px tile through MobileSAM's encoder allocates and frees ~1 GB of activations. With
glibc's defaults, blocks above the (dynamic) mmap threshold are unmapped on free and freed heap
tops are trimmed, so every encoder call faults its memory in afresh: ~290k page faults per
tile, measured, and 1.9 s per tile instead of 1.25 s on a 2-core CPU (benchmarks/throughput.py
prints both). `keep_freed_memory` fixes the mmap threshold at glibc's maximum (32 MiB, so the
activations come from the heap) and turns trimming off: the process keeps its high-water
mark instead of returning it to the system between tiles; freed blocks are reused, not
returned, so peak RSS grows a little (throughput benchmark: +5-12 %, 1.85 -> 2.0 GB). Dask's
nanny sets `MALLOC_TRIM_THRESHOLD_=65536` in its workers (runtime.py leaves it out for local
clusters); this overrides it in any worker, SLURM jobs included.

Process-wide, so it is called explicitly when models load (`Segmenter.from_config`, when
`runtime.keep_freed_memory` is on), never at import. A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_TRIM_OFF = 2**31 - 1  # an int: mallopt takes C ints; 2 GiB of free heap top before trimming
_TOP_PAD = 64 * 2**20  # grow the heap in 64 MiB steps (fewer brk calls)


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
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, _TRIM_OFF),
        (_M_TOP_PAD, _TOP_PAD)))
    log.debug("glibc malloc: keep freed memory (%s)", "applied" if ok else "partly refused")
    return ok
