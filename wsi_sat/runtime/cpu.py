"""CPU time: how many core-seconds a run spends, and how many of them the image encoder.

A run's CPU cost outside the encoder (reading, matching, the map, clean-up, polygons, writing,
the per-slide steps) is what keeps a GPU waiting or a CPU from its encoder limit; run.json
records it (`cpu_s`) for runs whose batches ran in this process:

* `process_s`: the process's CPU time over the run (every thread: lanes, the reader, OpenCV's
  and torch's pools);
* `encoder_s`: the CPU time of the threads that called the image encoder, while inside it
  (`CpuMeter`). Exact where each lane runs one torch thread (the default on CPUs where two
  lanes share the cores, and on GPUs, where the encoder's CPU time is the launching thread's);
  with several torch threads per lane their OpenMP workers' share is not in it, so the
  figure outside the encoder is an upper bound there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class CpuMeter:
    """Thread CPU seconds spent inside `measure()` blocks, summed over every thread that
    enters one (thread-safe: lanes share one engine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._seconds

    @contextmanager
    def measure(self) -> Iterator[None]:
        t = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - t
            with self._lock:
                self._seconds += spent


class CpuAccount:
    """The process's CPU time and the encoder's from its creation on (one run)."""

    def __init__(self, encoder: CpuMeter) -> None:
        self._encoder = encoder
        self._process0 = time.process_time()
        self._encoder0 = encoder.seconds

    def record(self, tiles: int) -> dict[str, float | int]:
        """run.json's `cpu_s` until now, over the `tiles` tiles segmented meanwhile."""
        process = time.process_time() - self._process0
        enc = self._encoder.seconds - self._encoder0
        outside = max(0.0, process - enc)
        return {"process_s": round(process, 3), "encoder_s": round(enc, 3),
                "outside_encoder_s": round(outside, 3), "tiles": tiles,
                "outside_encoder_per_tile_s": round(outside / tiles, 4) if tiles else 0.0}
