"""`<stem>.manifest.json`: what a finished slide's outputs are, byte for byte.

Written in the final phase after every other output and just before run.json: the size and
sha256 of each output file (GeoJSONs, object tables, overview) and of every file of the label
store (its metadata and each stored chunk, by its path in the store). run.json then records the
manifest's sha256 and a sha256 of its own content (`record_sha256`), so `wsi-sat check` can
tell an intact folder from one where any byte of any output changed, a chunk went missing or
one was added. (The checks that need no hash are in pipeline/verify.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wsi_sat.signature import file_sha256, sha256_json
from wsi_sat.writers.atomic import write_atomic

SCHEMA = 1
RECORD_HASH = "record_sha256"


def store_files(store: Path) -> list[Path]:
    """Every file of a label store, in a stable order."""
    return sorted(p for p in Path(store).rglob("*") if p.is_file())


def _entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def build_manifest(out_dir: Path, files: list[Path], store: Path) -> dict[str, Any]:
    """The manifest of `files` (paths in `out_dir`) and of every file of `store`."""
    return {"schema": SCHEMA,
            "files": {p.name: _entry(p) for p in files},
            "store": {"name": store.name,
                      "files": {p.relative_to(store).as_posix(): _entry(p)
                                for p in store_files(store)}}}


def write_manifest(path: Path, manifest: dict[str, Any]) -> str:
    """Write the manifest (atomically); returns its file's sha256."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return file_sha256(path)


def sign_record(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its own hash added (over its JSON form, the hash key left out)."""
    body = json.loads(json.dumps(record, default=str))
    body.pop(RECORD_HASH, None)
    return {**body, RECORD_HASH: sha256_json(body)}


def record_intact(record: dict[str, Any]) -> bool:
    """Whether a run.json read back still has the content its hash was made of."""
    body = dict(record)
    signed = body.pop(RECORD_HASH, None)
    return signed is not None and signed == sha256_json(body)


def _verdict(path: Path, entry: dict[str, Any], quick: bool) -> str | None:
    """'missing', 'changed' or None for one file against its manifest entry."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry.get("bytes"):
        return "changed"
    if not quick and file_sha256(path) != entry.get("sha256"):
        return "changed"
    return None


def differences(out_dir: Path, manifest: dict[str, Any], store: Path, quick: bool
                ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """What differs from `manifest`: output files and store files that are missing or changed
    (name → verdict), and store files it does not list. `quick`: sizes only."""
    files = {name: _verdict(Path(out_dir) / name, entry, quick)
             for name, entry in manifest["files"].items()}
    chunks = manifest["store"]["files"]
    in_store = {name: _verdict(store / name, entry, quick) for name, entry in chunks.items()}
    on_disk = {p.relative_to(store).as_posix() for p in store_files(store)}
    return ({k: v for k, v in files.items() if v}, {k: v for k, v in in_store.items() if v},
            sorted(on_disk - set(chunks)))


def complete(out_dir: Path, manifest_path: Path, store: Path) -> bool:
    """Whether every file a manifest lists is in place with its size, and nothing was added
    to the store (a quick look, no hashing: what a cohort --resume trusts before skipping)."""
    try:
        manifest = json.loads(Path(manifest_path).read_text())
        return not any(differences(out_dir, manifest, store, quick=True))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
