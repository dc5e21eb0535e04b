"""Python's cyclic garbage collector during a run: the objects alive as it starts are left out.

A run holds ~500k long-lived, collector-tracked objects before its first tile (imported
modules, torch's models, the reference). Python's full collections scan all of them each time,
and a run's own allocations (per-tile polygons, the merge, the GeoJSON's coordinates) trigger
several, each a scan of the whole heap for a few objects of the run. `gc.freeze()` moves the
objects alive now into a permanent generation that collections skip (the standard library's
tool for long-lived heaps); `gc.unfreeze()` at the end of the run gives them back to the
oldest generation, so anything among them that became cyclic garbage in the meantime is
collected afterwards. Reference counting frees objects as usual throughout; only cycles among
the objects frozen wait until the run ends. Results do not change.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _FreezeState:
    """The process's one freeze: blocks counted across threads (lanes, a Dask worker's
    batches, a cohort's slides), frozen by the first to come in and given back by the last to
    leave. `gc.get_freeze_count()` walks the whole permanent generation holding the GIL, so it
    is asked once, by the outermost block, and only to see whether a caller froze the heap
    itself."""

    lock = threading.Lock()
    depth = 0
    ours = False  # whether the outermost block froze (False: a caller had frozen already)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects alive now for the duration of the block. Nested or concurrent blocks
    share the outermost freeze (given back when the last of them ends); a caller that froze
    its own heap beforehand is left in charge of it."""
    with _FreezeState.lock:
        if _FreezeState.depth == 0:
            _FreezeState.ours = gc.get_freeze_count() == 0
            if _FreezeState.ours:
                gc.freeze()
        _FreezeState.depth += 1
    try:
        yield
    finally:
        with _FreezeState.lock:
            _FreezeState.depth -= 1
            if _FreezeState.depth == 0 and _FreezeState.ours:
                gc.unfreeze()
                _FreezeState.ours = False
