"""Shared fixtures: synthetic images with known answers and a fast stand-in for SAM.

`FakeEngine` has SamEngine's interface. Its "embedding" is the patch mean colour projected to 32
channels (so colour separates classes as real features would), and its "decoder" floods the
pixels whose colour is close to the colour under the positive points. It exercises every
step of the method without weights, in milliseconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from wsi_sat.config import Config, load_config
from wsi_sat.models.features import SamEncoderFeatures
from wsi_sat.models.sam import Encoded
from wsi_sat.runtime.cpu import CpuMeter
from wsi_sat.segmenter import Segmenter

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_TILES = SHARED / "data" / "tiles"


def _content(emb: torch.Tensor) -> str:
    """An embedding's key, the same for it rounded to float16 or stored and read back."""
    return hashlib.sha1(emb.to(torch.float16).contiguous().numpy().tobytes()).hexdigest()


class FakeEngine:
    input_px = 256
    embed_grid = 16
    encoder_batch = 8
    device = torch.device("cpu")
    spec = type("Spec", (), {"name": "fake"})()
    weights_path = None
    weights_sha256 = None

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.randn(3, 32, generator=gen)
        self.encode_calls = 0
        self.encoded_images = 0
        self._images: dict[int, np.ndarray] = {}
        self.encoder_cpu = CpuMeter()

    def input_size(self, hw, scale=None):
        s = self.input_px / max(hw) if scale is None else min(scale, self.input_px / max(hw))
        return int(hw[0] * s + 0.5), int(hw[1] * s + 0.5)

    def encode(self, images, scale=None):
        with self.encoder_cpu.measure():
            return self._encode(images, scale)

    def _encode(self, images, scale=None):
        self.encode_calls += 1
        self.encoded_images += len(images)
        out = []
        for img in images:
            ih, iw = self.input_size(img.shape[:2], scale)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255
            x = F.interpolate(x, (ih, iw), mode="bilinear", align_corners=False)
            x = F.pad(x, (0, self.input_px - iw, 0, self.input_px - ih))
            pooled = F.avg_pool2d(x, 16)[0]  # (3, 16, 16)
            emb = torch.einsum("chw,cd->dhw", pooled - 0.5, self.proj)
            out.append(Encoded(emb, tuple(img.shape[:2]), (ih, iw)))
            self._images[_content(emb)] = img  # the fake decoder looks at the pixels
        return out

    def decode(self, enc, points_xy, labels, mask_logits=None):
        img = self._images[_content(enc.embedding)].astype(np.float32)
        h, w = img.shape[:2]
        outs = []
        for pts, lab in zip(np.asarray(points_xy), np.asarray(labels)):
            pos = pts[lab == 1]
            if len(pos) == 0:
                outs.append(np.full((h, w), -5.0, np.float32))
                continue
            yx = [(min(h - 1, int(y)), min(w - 1, int(x))) for x, y in pos]
            cols = np.stack([img[y, x] for y, x in yx])
            d = np.min(np.linalg.norm(img[:, :, None, :] - cols[None, None], axis=-1), axis=-1)
            comp, _ = ndimage.label(d < 40)  # the objects under the points, like SAM
            hit = [comp[y, x] for y, x in yx if comp[y, x] > 0]
            outs.append(np.where(np.isin(comp, hit), 5.0, -5.0).astype(np.float32))
        full = torch.from_numpy(np.stack(outs))[:, None]
        ih, iw = enc.input_hw
        x = F.interpolate(full, (ih, iw), mode="bilinear", align_corners=False)
        x = F.pad(x, (0, self.input_px - iw, 0, self.input_px - ih), value=-5.0)
        low = F.interpolate(x, (64, 64), mode="area")
        return low, torch.full((len(outs),), 0.9)

    def upscale(self, enc, low):
        x = F.interpolate(low, (self.input_px, self.input_px), mode="bilinear")
        x = x[..., : enc.input_hw[0], : enc.input_hw[1]]
        return F.interpolate(x, enc.original_hw, mode="bilinear")[:, 0]

    def map_to_mask_prompt(self, enc, prob, gain=0.5):
        return torch.zeros(1, 1, 64, 64)


def blobs_image(seed: int, size=(200, 240), n=5, radius=(14, 24), shift=(0, 0)):
    """Pink background with purple discs: image (H, W, 3) uint8 and the disc mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), np.float32) + np.array([235, 190, 210])
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(n):
        r = rng.uniform(*radius)
        cy, cx = rng.uniform(r, h - r) + shift[0], rng.uniform(r, w - r) + shift[1]
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img[mask] = np.array([110, 60, 150])
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fast_config() -> Config:
    return load_config(None, ["sat.pixel.enabled=false", "sat.postprocess.min_area_px=16"])


@pytest.fixture
def fake_segmenter(fake_engine, fast_config) -> Segmenter:
    return Segmenter(fake_engine, SamEncoderFeatures(), fast_config)


def shared_or_skip(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (the ../shared folder is absent)")
    return path


