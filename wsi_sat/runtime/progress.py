"""Progress of a run's phases (reference, survey, tiles, finalize), with counts and an ETA.

In a terminal: a tqdm bar. Anywhere else (a SLURM or cron log, a pipe): plain log lines at a
steady pace — at the start, every `LOG_EVERY_S` seconds or each further tenth of the work,
whichever comes first, and at the end — so a batch log shows where a run is without a flood.
Lines go to the `wsi_sat.progress` logger at INFO (shown by default, hidden by `-q`)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("wsi_sat.progress")

LOG_EVERY_S = 30.0


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts `total` items of one phase (`what`, e.g. "case.1 tiles"); `initial` were done
    before (a resume). Use as a context manager; `update(n)` after each n items."""

    def __init__(self, what: str, total: int, unit: str, *, initial: int = 0,
                 every_s: float = LOG_EVERY_S, terminal: bool | None = None) -> None:
        self.what, self.total, self.unit, self.every_s = what, max(0, total), unit, every_s
        self.done = self.initial = initial
        self.t0 = self._last_t = time.monotonic()
        self._last_tenth = self._tenth()
        self._finished = False
        shown = log.isEnabledFor(logging.INFO)
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar: Any = None
        if shown and terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=initial, unit=unit, desc=what,
                             dynamic_ncols=True, file=sys.stderr)
        elif self.total:
            log.info("%s: %d %ss to do%s", what, self.total - initial, unit,
                     f" ({initial} done before)" if initial else "")

    def _tenth(self) -> int:
        return int(10 * self.done / self.total) if self.total else 10

    def line(self) -> str:
        """Where the phase stands: done/total, percent, rate and the time left."""
        elapsed = time.monotonic() - self.t0
        new = self.done - self.initial
        rate = new / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f", about {_duration(left)} left" if rate > 0 and self.done < self.total else ""
        pct = 100 * self.done / self.total if self.total else 100.0
        return (f"{self.what}: {self.done}/{self.total} {self.unit}s ({pct:.0f} %), "
                f"{rate:.2f} {self.unit}/s{eta}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.done >= self.total:
            self._finish()
            return
        now, tenth = time.monotonic(), self._tenth()
        if now - self._last_t >= self.every_s or tenth > self._last_tenth:
            self._last_t, self._last_tenth = now, tenth
            log.info("%s", self.line())

    def _finish(self) -> None:
        if not self._finished and self.total:
            log.info("%s: %d %ss done in %s", self.what, self.done - self.initial, self.unit,
                     _duration(time.monotonic() - self.t0))
        self._finished = True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._finish()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
