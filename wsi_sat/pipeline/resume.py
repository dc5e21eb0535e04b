"""What a run may reuse from an output folder, decided by the run key (pipeline/signature.py).

* A slide whose run.json carries this run's key, with every file its manifest lists in place at
  its size, is done (a cohort `--resume` skips it; one with an output deleted or cut is redone).
* `--resume` reuses the `.partial` store and the shards only when they carry this key, and
  refuses otherwise (one line; rerun without --resume to start afresh): it never mixes runs.
* A store already renamed into place whose run.json is missing (a kill in the final phase)
  carries the key too: `--resume` moves it back to `.partial` and finishes the final phase
  instead of starting from an empty store.
* Without `--resume`, the in-progress artefacts of an earlier run are removed; finished outputs
  stay until the final phase replaces them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import zarr

from wsi_sat.errors import RunStateError
from wsi_sat.pipeline.plan import OutputPaths
from wsi_sat.writers.manifest import complete
from wsi_sat.writers.ome_zarr import FORMAT

KEY_ATTR = "wsi_sat"


def store_key(store: Path) -> str | None:
    """The run key recorded in a label store's root attributes (None: none or unreadable)."""
    try:
        attrs = zarr.open_group(str(store), mode="r", **FORMAT).attrs.asdict()
    except Exception:  # noqa: BLE001 - a missing or broken store carries no key
        return None
    return (attrs.get(KEY_ATTR) or {}).get("run_key")


def mark_store(store: Path, key: str) -> None:
    root = zarr.open_group(str(store), mode="a", **FORMAT)
    root.attrs[KEY_ATTR] = {"run_key": key}


def finished(paths: OutputPaths, key: str) -> dict[str, Any] | None:
    """run.json of a complete earlier run with this key, else None."""
    try:
        record = json.loads(paths.run_json.read_text())
    except (OSError, ValueError):
        return None
    if record.get("run_key") != key:
        return None
    # every output in place at its size (a file deleted or cut since: the slide is redone)
    return record if complete(paths.out_dir, paths.manifest, paths.zarr) else None


def _refuse(what: Path) -> RunStateError:
    return RunStateError(
        f"'{what}' was written by a run with other inputs (slide, reference, config or "
        "weights); rerun without --resume to start this slide afresh, or use another --out")


def prepare(paths: OutputPaths, key: str, resume: bool) -> None:
    """Leave the folder ready for this run's batches (see the module docstring)."""
    if not resume:
        shutil.rmtree(paths.partial, ignore_errors=True)
        shutil.rmtree(paths.shards, ignore_errors=True)
        return
    if paths.partial.exists():
        if store_key(paths.partial) not in (None, key):
            raise _refuse(paths.partial)
    elif paths.zarr.exists() and not paths.run_json.exists() and store_key(paths.zarr) == key:
        paths.zarr.rename(paths.partial)  # killed in the final phase: finish it
    for shard in sorted(paths.shards.glob("batch_*.json")) if paths.shards.is_dir() else []:
        try:
            shard_key = json.loads(shard.read_text()).get("run_key")
        except (OSError, ValueError):
            shard.unlink()  # a torn shard (written atomically, so only by hand): redo it
            continue
        if shard_key != key:
            raise _refuse(shard)
