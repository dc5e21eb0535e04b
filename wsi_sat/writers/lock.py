"""One writer per slide output: a lock file created atomically (O_EXCL) beside the outputs,
holding the writer's host, pid and start time. A lock whose process is gone (same host, pid not
running) is stale and taken over with a warning; any other lock refuses the second run."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsi_sat.errors import RunStateError

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _try_create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, handle)
    return True


@contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold `path` (e.g. `<out>/<stem>.lock`) while writing a slide's outputs."""
    path = Path(path)
    for _ in range(2):
        if _try_create(path):
            break
        try:
            owner = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        same_host = owner.get("host") == socket.gethostname()
        if same_host and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
            log.warning("removing the stale lock %s of pid %s (no longer running)", path,
                        owner["pid"])
            path.unlink(missing_ok=True)
            continue
        raise RunStateError(
            f"'{path.parent}' is being written by pid {owner.get('pid', '?')} on host "
            f"{owner.get('host', '?')} since {owner.get('since', '?')} ('{path.name}'); wait "
            "for that run, or remove the lock file if it is gone")
    else:  # pragma: no cover - lost a race twice
        raise RunStateError(f"could not take the lock '{path}'; try again")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
