"""One writer per slide output: a lock file created atomically (a hard link of a written file;
O_EXCL where the file system has no hard links) beside the outputs,
holding the writer's host, pid and start time. A lock whose process is gone (same host, pid not
running), or one that names no owner, is stale and taken over with a warning; any other lock
refuses the second run."""

from __future__ import annotations

import errno
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
    """Create the lock with its owner already in it: written to a temporary file, then
    hard-linked to the lock's name (atomic, and fails when the lock exists), so no reader ever
    sees an empty lock of a live run. Where the file system has no hard links, O_EXCL."""
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(body)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    return True


def _stale(owner: dict) -> bool:
    """A lock nobody can hold: no owner in it (a crash while it was written, by hand, or an
    older wsi-sat), or an owner on this host that is no longer running."""
    if not isinstance(owner.get("pid"), int):
        return True
    return owner.get("host") == socket.gethostname() and not _alive(owner["pid"])


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
        owner = owner if isinstance(owner, dict) else {}
        if _stale(owner):
            log.warning("removing the stale lock %s (%s)", path,
                        f"pid {owner['pid']} is no longer running" if "pid" in owner
                        else "it names no owner")
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
