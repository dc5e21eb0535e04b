"""A prepared reference on disk: encoded and calibrated once (`wsi-sat reference prepare`), then
read by every run that uses it (`wsi-sat run --reference-cache`), e.g. 500 SLURM array tasks of
one cohort that would otherwise each spend the reference's encoding and self-calibration.

The file is a zip: `meta.json` (schema, key, what it was made from, calibration, class name),
`arrays.npz` (read with allow_pickle=False) and, when the pixel model is on, `pixel_model.skops`
(scikit-learn's random forest through skops, which loads only trusted types: no pickle, no code
runs on loading). `meta.json` records the sha256 of every other member and a sha256 of its own
content (`signature`), so any edit of any member (a threshold in the calibration, a zeroed
array, a swapped model) is refused, not only a damaged zip. Its **key** is a sha256 of the
reference pixels and masks (and negatives), their pixel size, the resolved config's
result-changing keys, the weights' sha256 and the package version; a run computes the key it expects and refuses a cache made from anything else.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from wsi_sat import __version__
from wsi_sat.config import Config
from wsi_sat.errors import ReferenceError
from wsi_sat.reference.prepare import SlideReference
from wsi_sat.sat import Calibration, ObjectSizes, ReferenceEmbedding
from wsi_sat.signature import (
    bytes_sha256,
    model_digests,
    reference_identity,
    result_config,
    sha256_json,
)
from wsi_sat.writers.atomic import write_atomic

SCHEMA = 3  # 3: signed over its whole content (2 and older are refused: prepare again)
ARRAYS = ("bank", "labels", "pos_xy", "ref_ids", "negative", "colour_mean", "colour_std")
TRUSTED = ["sklearn.tree._tree.Tree"]  # beyond skops' default trusted scikit-learn types
# keys that name the output objects, never change what the reference is
_NAMING = {("wsi", "class_name"), ("wsi", "class_color")}


def cache_key_parts(info: dict[str, Any], mpp: float | None, config: Config,
                    models: dict[str, Any]) -> dict[str, str]:
    """The parts of the key (each a sha256), so a refusal can say which differs. `info`: the
    reference's provenance (pixel hashes, source mpp); `mpp`: the working resolution it was
    prepared at."""
    cfg = result_config(config)
    for section, key in _NAMING:
        cfg[section].pop(key, None)
    return {"reference": sha256_json({**reference_identity(info), "working_mpp": mpp}),
            "config": sha256_json(cfg), "weights": sha256_json(model_digests(models)),
            "version": __version__}


def cache_key(parts: dict[str, str]) -> str:
    return sha256_json(parts)


def _plain(obj: Any) -> Any:
    """JSON-ready: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _embedding_meta(emb: ReferenceEmbedding) -> dict[str, Any]:
    return {"colour_weight": float(emb.colour_weight), "fg_fraction": float(emb.fg_fraction),
            "calibration": _plain(asdict(emb.calibration)),
            "objects": _plain(asdict(emb.objects)) if emb.objects is not None else None,
            "pixel_model": emb.pixel_model is not None}


def save_reference_cache(path: Path, reference: SlideReference, parts: dict[str, str],
                         class_name: str | None) -> str:
    """Write `reference` (atomically) with its key; returns the key."""
    import skops.io as sio

    if reference.embedding.decision is not None:
        raise ValueError("a slide's decision is not part of a prepared reference")
    members: dict[str, bytes] = {}
    embeddings = {"tiles": reference.embedding, "coarse": reference.coarse}
    meta: dict[str, Any] = {"schema": SCHEMA, "key": cache_key(parts), "parts": parts,
                            "mpp": reference.mpp, "info": _plain(reference.info),
                            "class_name": class_name, "embeddings": {}}
    arrays: dict[str, np.ndarray] = {}
    for name, emb in embeddings.items():
        if emb is None:
            continue
        meta["embeddings"][name] = _embedding_meta(emb)
        for field in ARRAYS:
            arrays[f"{name}.{field}"] = np.asarray(getattr(emb, field))
        if emb.pixel_model is not None:
            members[f"{name}.pixel_model.skops"] = sio.dumps(emb.pixel_model)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    members["arrays.npz"] = buf.getvalue()
    meta["content"] = {name: bytes_sha256(data) for name, data in members.items()}
    meta = json.loads(json.dumps(meta, default=str))
    meta["signature"] = sha256_json(meta)
    members["meta.json"] = json.dumps(meta, indent=1).encode()

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)

    write_atomic(Path(path), write)
    return meta["key"]


def _damaged(path: Path, why: str) -> ReferenceError:
    return ReferenceError(f"reference cache '{path}' {why}; write it again with `wsi-sat "
                          "reference prepare`")


def read_cache_meta(path: Path) -> dict[str, Any]:
    """The cache's meta.json (what it was made from), after checking that neither it nor any
    other member was changed since it was written; a missing, foreign or edited file is a
    ReferenceError."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"reference cache '{path}' not found; write it with `wsi-sat "
                             "reference prepare ... --out {path}`".replace("{path}", str(path)))
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            members = {n: bytes_sha256(zf.read(n)) for n in zf.namelist() if n != "meta.json"}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, ValueError):
        raise ReferenceError(f"'{path}' is not a wsi-sat reference cache (or is damaged); "
                             "write it again with `wsi-sat reference prepare`") from None
    if not isinstance(meta, dict):
        raise _damaged(path, "has a malformed meta.json")
    if meta.get("schema") != SCHEMA:
        raise ReferenceError(f"reference cache '{path}' has schema {meta.get('schema')!r}, "
                             f"this wsi-sat reads {SCHEMA}; prepare it again")
    body = {k: v for k, v in meta.items() if k != "signature"}
    if meta.get("signature") != sha256_json(body):
        raise _damaged(path, "was edited after it was written (meta.json)")
    if meta.get("content") != members:
        raise _damaged(path, "was edited after it was written (its arrays or models)")
    return meta


def load_reference_cache(path: Path, config: Config, models: dict[str, Any]
                         ) -> tuple[SlideReference, dict[str, Any]]:
    """The prepared reference in `path`, if it was made from this config, these weights and
    this version (else a ReferenceError naming what differs); returns it and its meta."""
    meta = read_cache_meta(path)
    try:
        expected = cache_key_parts(meta["info"], meta["mpp"], config, models)
    except (KeyError, TypeError, AttributeError):
        raise _damaged(path, "has a malformed meta.json") from None
    if cache_key(expected) != meta.get("key"):
        differ = [k for k in ("config", "weights", "version", "reference")
                  if expected.get(k) != (meta.get("parts") or {}).get(k)]
        raise ReferenceError(
            f"reference cache '{path}' was prepared with another {' and '.join(differ) or 'key'}"
            " than this run's; prepare it again with `wsi-sat reference prepare` and the same "
            "--config/--set as the run")
    try:
        with zipfile.ZipFile(path) as zf:
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            embeddings: dict[str, ReferenceEmbedding | None] = {"tiles": None, "coarse": None}
            for name, m in meta["embeddings"].items():
                pixel = None
                if m["pixel_model"]:
                    import skops.io as sio  # slow to import: only when there is a model

                    blob = zf.read(f"{name}.pixel_model.skops")
                    untrusted = [t for t in sio.get_untrusted_types(data=blob)
                                 if t not in TRUSTED]
                    if untrusted:
                        raise ReferenceError(f"reference cache '{path}' holds objects of "
                                             f"untrusted types ({untrusted[0]}); refused")
                    pixel = sio.loads(blob, trusted=TRUSTED)
                embeddings[name] = ReferenceEmbedding(
                    **{f: arrays[f"{name}.{f}"] for f in ARRAYS},
                    colour_weight=float(m["colour_weight"]), fg_fraction=float(m["fg_fraction"]),
                    calibration=Calibration(**m["calibration"]), pixel_model=pixel,
                    objects=ObjectSizes(**m["objects"]) if m.get("objects") else None)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise ReferenceError(f"reference cache '{path}' is damaged ({exc.__class__.__name__});"
                             " write it again with `wsi-sat reference prepare`") from None
    if embeddings["tiles"] is None:
        raise ReferenceError(f"reference cache '{path}' holds no reference; prepare it again")
    reference = SlideReference(embeddings["tiles"], embeddings["coarse"], meta["mpp"],
                               dict(meta["info"]))
    return reference, meta
