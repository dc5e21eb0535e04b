"""Read ahead: a lazy iterable of images consumed in chunks by one background thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def _take(source: Iterator[T], n: int) -> list[T]:
    return list(islice(source, n))


class Prefetcher:
    """Chunks of `step` items of `items`, each read by one background thread (so a slide handle
    behind a generator is never read by two threads): `request()` starts reading the next chunk,
    `next_chunk()` waits for it (and returns how long it waited). The caller chooses when to
    request: on a CPU after its encoder call (the encoder's threads take the cores), on a GPU
    before it (reading overlaps the encoder too)."""

    def __init__(self, items: Iterable[T], step: int) -> None:
        self._source = iter(items)
        self._step = max(1, step)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsi-sat-read")
        self._pending = None

    def request(self) -> None:
        if self._pending is None:
            self._pending = self._pool.submit(_take, self._source, self._step)

    def next_chunk(self) -> list[T]:
        self.request()
        pending, self._pending = self._pending, None
        return pending.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
