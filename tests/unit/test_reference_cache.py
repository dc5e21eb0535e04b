"""The prepared reference on disk (`wsi-sat reference prepare` / `run --reference-cache`):
read back equal, refused when made from other inputs, never unpickled."""

import io
import json
import zipfile

import numpy as np
import pytest

from tests.conftest import blobs_image
from wsi_sat import api
from wsi_sat.config import load_config
from wsi_sat.errors import ReferenceError
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.reference import Reference
from wsi_sat.segmenter import Segmenter

# every window judged, so the pixel model's path is exercised
SETTINGS = ("sat.pixel.enabled=true", "sat.decode.mode=map", "wsi.coarse_downsample=2",
            "sat.calibration.max_judged_references=8")


def _segmenter(fake_engine, *extra):
    cfg = load_config(None, ["wsi.tile_px=256", "wsi.overlap_px=32", *extra])
    return Segmenter(fake_engine, SamEncoderFeatures(), cfg)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.conftest import FakeEngine

    seg = _segmenter(FakeEngine(), *SETTINGS)
    ref = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference("blobs", *blobs_image(0, size=(400, 480)), "array")]))
    path = tmp_path_factory.mktemp("cache") / "ref.wsisat"
    key = api.save_prepared_reference(path, ref, seg, "Gland")
    return seg, ref, path, key


def test_a_prepared_reference_reads_back_equal(prepared):
    seg, ref, path, key = prepared
    assert len(key) == 64
    back, class_name = api.load_prepared_reference(path, seg)
    assert class_name == "Gland" and back.mpp == ref.mpp and back.info == json.loads(
        json.dumps(ref.info, default=str))
    for a, b in ((ref.embedding, back.embedding), (ref.coarse, back.coarse)):
        assert (a is None) == (b is None)
        if a is None:
            continue
        for name in ("bank", "labels", "pos_xy", "ref_ids", "colour_mean", "colour_std"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        assert a.calibration == b.calibration
        assert (a.pixel_model is None) == (b.pixel_model is None)
    assert ref.embedding.pixel_model is not None, "the pixel model's path is not exercised"
    model, read = ref.embedding.pixel_model, back.embedding.pixel_model
    for tree, tree_read in zip(model.estimators_, read.estimators_, strict=True):  # the same trees
        for name in ("feature", "threshold", "value", "children_left", "children_right"):
            assert np.array_equal(getattr(tree.tree_, name), getattr(tree_read.tree_, name))
    feats = np.random.default_rng(0).random((50, model.n_features_in_))
    # the same probabilities up to the order in which n_jobs threads sum the trees
    assert np.allclose(model.predict_proba(feats), read.predict_proba(feats), rtol=0, atol=1e-12)


def test_a_cache_from_other_inputs_is_refused(prepared, fake_engine):
    _, _, path, _ = prepared
    other = _segmenter(fake_engine, *SETTINGS, "sat.open_set.restarts=3")
    with pytest.raises(ReferenceError, match="another config"):
        api.load_prepared_reference(path, other)
    same_but_named = _segmenter(fake_engine, *SETTINGS, "wsi.class_name=Other")
    api.load_prepared_reference(path, same_but_named)  # the objects' name is not the reference
    fake_engine.weights_sha256 = "0" * 64
    try:
        with pytest.raises(ReferenceError, match="another weights"):
            api.load_prepared_reference(path, _segmenter(fake_engine, *SETTINGS))
    finally:
        fake_engine.weights_sha256 = None


def _rewrite(src, dst, **members):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            zout.writestr(item, members.pop(item, zin.read(item)))
        for name, data in members.items():
            zout.writestr(name, data)


def _resigned(src, dst, **members):
    """`src` with `members` replaced and meta.json's hashes made again to match, as a forger
    would: what the signature cannot refuse, the loader still must."""
    from wsi_sat.signature import bytes_sha256, sha256_json

    with zipfile.ZipFile(src) as zin:
        data = {n: zin.read(n) for n in zin.namelist()}
    data.update(members)
    meta = json.loads(data.pop("meta.json"))
    meta["content"] = {n: bytes_sha256(b) for n, b in data.items()}
    meta.pop("signature")
    meta["signature"] = sha256_json(meta)
    with zipfile.ZipFile(dst, "w") as zout:
        for name, blob in {**data, "meta.json": json.dumps(meta).encode()}.items():
            zout.writestr(name, blob)


def _edited_meta(path, edit):
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
    edit(meta)
    return json.dumps(meta).encode()


def test_a_cache_with_edited_contents_is_refused(prepared, tmp_path):
    """A re-zipped cache with another calibration threshold, with a zeroed feature bank, with
    a meta.json that is not an object: each refused with one line, before any of it is used."""
    seg, _, path, _ = prepared

    def threshold(meta):
        meta["embeddings"]["tiles"]["calibration"]["threshold"] = 0.99

    edited = tmp_path / "threshold.wsisat"
    _rewrite(path, edited, **{"meta.json": _edited_meta(path, threshold)})
    with pytest.raises(ReferenceError, match="edited after it was written"):
        api.load_prepared_reference(edited, seg)
    with zipfile.ZipFile(path) as zf, np.load(io.BytesIO(zf.read("arrays.npz"))) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["tiles.bank"] = np.zeros_like(arrays["tiles.bank"])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    zeroed = tmp_path / "zeroed.wsisat"
    _rewrite(path, zeroed, **{"arrays.npz": buf.getvalue()})
    with pytest.raises(ReferenceError, match="edited after it was written"):
        api.load_prepared_reference(zeroed, seg)
    for bad_meta in (b"[]", b"3", b'"x"', b"{}"):
        malformed = tmp_path / "malformed.wsisat"
        _rewrite(path, malformed, **{"meta.json": bad_meta})
        with pytest.raises(ReferenceError, match="malformed|schema"):
            api.load_prepared_reference(malformed, seg)
    extra = tmp_path / "extra.wsisat"
    _rewrite(path, extra, **{"other.npz": b"x"})
    with pytest.raises(ReferenceError, match="edited after it was written"):
        api.load_prepared_reference(extra, seg)


def test_a_cache_that_would_run_code_is_refused(prepared, tmp_path):
    """A skops file holding a function (os.system) instead of trees; a pickled npz (each with
    the cache's hashes made again to match)."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    seg, _, path, _ = prepared
    evil = tmp_path / "evil.wsisat"
    _resigned(path, evil, **{"tiles.pixel_model.skops": sio.dumps(FunctionTransformer(os.system))})
    with pytest.raises(ReferenceError, match="untrusted"):
        api.load_prepared_reference(evil, seg)
    buf = io.BytesIO()
    np.savez(buf, **{"tiles.bank": np.array([object()], dtype=object)})
    pickled = tmp_path / "pickled.wsisat"
    _resigned(path, pickled, **{"arrays.npz": buf.getvalue()})
    with pytest.raises(ReferenceError, match="damaged"):
        api.load_prepared_reference(pickled, seg)
