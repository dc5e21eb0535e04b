"""Read ahead: a lazy iterable of images consumed in chunks by one background thread."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def _take(source: Iterator[T], n: int) -> tuple[list[T], float]:
    """The next `n` items and the seconds the reader spent producing them."""
    t = time.perf_counter()
    items = list(islice(source, n))
    return items, time.perf_counter() - t


class Prefetcher:
    """Chunks of `step` items of `items`, read by one background thread (so a slide handle
    behind a generator is never read by two threads), up to `depth` chunks ahead: `request()`
    starts reading the next chunks, `next_chunk()` waits for the oldest one. The caller chooses
    when to request: on a CPU after its encoder call (the encoder's threads take the cores), on
    a GPU before it (reading overlaps the encoder too). `read_s` is the seconds the reader spent
    on the chunk `next_chunk` returned last (reading and decoding, beside the caller's work)."""

    def __init__(self, items: Iterable[T], step: int, depth: int = 1) -> None:
        self._source = iter(items)
        self._step = max(1, step)
        self._depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsi-sat-read")
        self._pending: deque[Future[tuple[list[T], float]]] = deque()
        self.read_s = 0.0

    def request(self) -> None:
        while len(self._pending) < self._depth:
            self._pending.append(self._pool.submit(_take, self._source, self._step))

    def next_chunk(self) -> list[T]:
        if not self._pending:
            self.request()
        items, self.read_s = self._pending.popleft().result()
        return items

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
