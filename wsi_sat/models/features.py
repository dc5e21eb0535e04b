"""Patch-feature backbones for matching.

* `sam-encoder` (default): the SAM image embedding of the encoder pass that SAM decoding needs
  anyway, so each image is encoded once.
* `dinov2_vit{s,b,l,g}14`: DINOv2 from a user checkpoint in the official layout
  (`dinov2_vits14_pretrain.pth` …), built with timm's DINOv2 ViTs, which convert the official
  key names. The official torch.hub code needs a network; this path does not.

Every backbone returns a `PatchGrid`: features for the patches that touch the image (the last,
partly covered row and column included) and the patch size in original pixels.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsi_sat.errors import WeightsError
from wsi_sat.geometry import patch_centres_xy
from wsi_sat.models.registry import ModelSpec, checked_weights
from wsi_sat.models.sam import Encoded, load_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchGrid:
    """Patch features of one image: feats (gh, gw, D) float32; patch (py, px) in original px."""

    feats: np.ndarray
    patch_hw: tuple[float, float]

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.feats.shape[0], self.feats.shape[1]

    def centres_xy(self) -> np.ndarray:
        """(gh*gw, 2) patch centres in original pixels, row-major."""
        return patch_centres_xy(self.grid_hw, self.patch_hw)


class FeatureBackbone(Protocol):
    name: str

    def grids(self, images: list[np.ndarray], encoded: list[Encoded]) -> list[PatchGrid]: ...


def sam_embedding_grid(enc: Encoded, stride_px: int = 16) -> PatchGrid:
    """The SAM embedding cropped to the patches that touch the image (no padding patches)."""
    gh = math.ceil(enc.input_hw[0] / stride_px)
    gw = math.ceil(enc.input_hw[1] / stride_px)
    feats = enc.embedding[:, :gh, :gw].permute(1, 2, 0).float().cpu().numpy()
    return PatchGrid(
        np.ascontiguousarray(feats, dtype=np.float32),
        (stride_px / enc.scale, stride_px / enc.scale),
    )


class SamEncoderFeatures:
    name = "sam-encoder"

    def grids(self, images: list[np.ndarray], encoded: list[Encoded]) -> list[PatchGrid]:
        return [sam_embedding_grid(enc) for enc in encoded]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def build_dinov2(spec: ModelSpec, input_px: int) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import timm

        return timm.create_model(
            spec.arch, pretrained=False, img_size=input_px, num_classes=0, dynamic_img_size=True
        )


def convert_official_dinov2(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Official DINOv2 key layout → timm's (drops mask_token, renames SwiGLU w12/w3)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    out = checkpoint_filter_fn(state, model)
    return {k: v for k, v in out.items() if k != "mask_token"}


class Dinov2Features:
    """DINOv2 patch features at the SAM encoder's scale: an image the SAM encoder sees at
    `enc.scale` input px per pixel is fed to DINOv2 at `enc.scale * input_px / sam_input_px`,
    so whole slides (one fixed encoder scale for tiles and reference) keep one scale here too."""

    def __init__(
        self, spec: ModelSpec, checkpoint: Path | None, device: torch.device, input_px: int,
        sam_input_px: int = 1024,
    ) -> None:
        if checkpoint is None:
            raise WeightsError(
                f"{spec.name} needs its checkpoint: get {spec.filename} from {spec.source} "
                "and pass --set models.features.checkpoint=PATH"
            )
        path, digest = checked_weights(spec, checkpoint)
        self.input_px = max(14, int(round(input_px / 14)) * 14)
        model = build_dinov2(spec, self.input_px)
        state = convert_official_dinov2(load_state(path), model)
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise WeightsError(
                f"'{path}' does not fit {spec.name} ({len(missing)} missing tensors, e.g. "
                f"{missing[0]}); pass the official {spec.filename}"
            )
        self.model = model.to(device).eval()
        self.device = device
        self.name = spec.name
        self.weights_sha256 = digest
        self.patch = 14
        self.sam_input_px = sam_input_px

    @torch.inference_mode()
    def grids(self, images: list[np.ndarray], encoded: list[Encoded]) -> list[PatchGrid]:
        out = []
        for image, enc in zip(images, encoded):
            h, w = image.shape[:2]
            scale = enc.scale * self.input_px / self.sam_input_px
            ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
            gh, gw = math.ceil(ih / self.patch), math.ceil(iw / self.patch)
            resized = np.array(Image.fromarray(image).resize((iw, ih), Image.Resampling.BICUBIC))
            x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).float() / 255.0
            mean = torch.tensor(_IMAGENET_MEAN, device=self.device)[:, None, None]
            std = torch.tensor(_IMAGENET_STD, device=self.device)[:, None, None]
            x = F.pad((x - mean) / std, (0, gw * self.patch - iw, 0, gh * self.patch - ih))
            tokens = self.model.forward_features(x[None])[0, self.model.num_prefix_tokens :]
            feats = tokens.reshape(gh, gw, -1).float().cpu().numpy()
            out.append(PatchGrid(np.ascontiguousarray(feats), (self.patch / scale,) * 2))
        return out


def load_backbone(
    spec: ModelSpec, checkpoint: Path | None, device: torch.device, input_px: int,
    sam_input_px: int = 1024,
) -> FeatureBackbone:
    if spec.name == "sam-encoder":
        return SamEncoderFeatures()
    return Dinov2Features(spec, checkpoint, device, input_px, sam_input_px)
