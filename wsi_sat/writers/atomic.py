"""Atomic file writes (a reader never sees a partial file under the final name) and the output
folder's checks. Files get the permissions of any other new file (0666 less the umask), not
mkstemp's 0600, so a lab sharing a disk can read them."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from wsi_sat.errors import OutputError


@cache
def _file_mode() -> int:
    """0666 less this process's umask (read from /proc where it can be, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (once, restored at once)
    os.umask(mask)
    return 0o666 & ~mask


def writable_dir(path: Path) -> Path:
    """`path` as an output folder: created when missing; an existing file or a folder this
    process cannot write is an OutputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out '{path}' is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder '{path}' ({exc.strerror}); "
                          "choose another --out") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder '{path}' is not writable; choose another --out")
    return path


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(final: Path, write: Callable[[Path], None]) -> None:
    with atomic_path(final) as tmp:
        write(tmp)


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
