"""Patch-feature backbones for matching.

* `sam-encoder` (default): the SAM image embedding of the encoder pass that SAM decoding needs
  anyway, so each image is encoded once.
* `dinov2_vit{s,b,l,g}14`: DINOv2 from a user checkpoint in the official layout
  (`dinov2_vits14_pretrain.pth` …), built with timm's DINOv2 ViTs, which convert the official
  key names. The official torch.hub code needs a network; this path does not.
* pathology foundation models by name (`uni`, `uni2-h`, `virchow2`, `h-optimus-0/1`,
  `prov-gigapath`), any timm ViT on the Hugging Face hub (`timm:hf-hub:ORG/NAME`) or a timm
  architecture with a checkpoint (`timm:ARCH`): timm models read from the local Hugging Face
  cache or a checkpoint path, normalised as their config says (models/timm_source.py).

Every backbone is a `wsi_sat.sat.engine.Backbone` and returns a `PatchGrid`: features for the patches that touch the image (the last,
partly covered row and column included) and the patch size in original pixels.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsi_sat.errors import WeightsError
from wsi_sat.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, checked_weights
from wsi_sat.models.sam import Encoded, load_state
from wsi_sat.models.timm_source import build_model, resolve_source
from wsi_sat.sat import Backbone, PatchGrid

log = logging.getLogger(__name__)


def sam_embedding_grid(enc: Encoded, stride_px: int = 16) -> PatchGrid:
    """The SAM embedding cropped to the patches that touch the image (no padding patches);
    a view of a channels-last embedding when the crop is whole rows (a 1024-px tile), so
    read-only (the SAM decoder reads the same memory)."""
    gh = math.ceil(enc.input_hw[0] / stride_px)
    gw = math.ceil(enc.input_hw[1] / stride_px)
    feats = np.ascontiguousarray(
        enc.embedding[:, :gh, :gw].permute(1, 2, 0).float().cpu().numpy(), dtype=np.float32)
    feats.flags.writeable = False
    return PatchGrid(feats, (stride_px / enc.scale, stride_px / enc.scale))


class SamEncoderFeatures:
    name = "sam-encoder"

    def grids(self, images: list[np.ndarray], encoded: list[Encoded]) -> list[PatchGrid]:
        return [sam_embedding_grid(enc) for enc in encoded]


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


class VitFeatures:
    """Patch tokens of a timm ViT at the SAM encoder's scale: an image the SAM encoder sees at
    `enc.scale` input px per pixel is fed to the ViT at `enc.scale * input_px / sam_input_px`,
    so whole slides (one fixed encoder scale for tiles and reference) keep one scale here too;
    `input_px == sam_input_px` feeds each image at its own (the working) resolution."""

    def __init__(self, model: torch.nn.Module, name: str, weights_sha256: str,
                 mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 input_px: int, sam_input_px: int = 1024, input_mpp: float | None = None
                 ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.name = name
        self.weights_sha256 = weights_sha256
        self.patch = int(model.patch_embed.patch_size[0])
        self.input_px = max(self.patch, int(round(input_px / self.patch)) * self.patch)
        self.sam_input_px = sam_input_px
        self.input_mpp = input_mpp  # µm/px the model was trained at (None: unknown)
        self._mean = torch.tensor(mean, device=device)[:, None, None]
        self._std = torch.tensor(std, device=device)[:, None, None]

    @torch.inference_mode()
    def grids(self, images: list[np.ndarray], encoded: list[Encoded]) -> list[PatchGrid]:
        out = []
        for image, enc in zip(images, encoded):
            h, w = image.shape[:2]
            scale = enc.scale * self.input_px / self.sam_input_px
            ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
            gh, gw = math.ceil(ih / self.patch), math.ceil(iw / self.patch)
            resized = image if (ih, iw) == (h, w) else np.array(
                Image.fromarray(image).resize((iw, ih), Image.Resampling.BICUBIC))
            x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).float() / 255.0
            x = F.pad((x - self._mean) / self._std,
                      (0, gw * self.patch - iw, 0, gh * self.patch - ih))
            tokens = self.model.forward_features(x[None])[0, self.model.num_prefix_tokens :]
            feats = tokens.reshape(gh, gw, -1).float().cpu().numpy()
            out.append(PatchGrid(np.ascontiguousarray(feats), (self.patch / scale,) * 2))
        return out


DINOV2_INPUT_PX = 518  # the official DINOv2 checkpoints: 37 patches across the SAM input


class Dinov2Features(VitFeatures):
    """DINOv2 from its official checkpoint layout (`dinov2_vits14_pretrain.pth` …)."""

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
        input_px = input_px or DINOV2_INPUT_PX
        model = build_dinov2(spec, max(14, int(round(input_px / 14)) * 14))
        state = convert_official_dinov2(load_state(path), model)
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise WeightsError(
                f"'{path}' does not fit {spec.name} ({len(missing)} missing tensors, e.g. "
                f"{missing[0]}); pass the official {spec.filename}"
            )
        super().__init__(model, spec.name, digest, IMAGENET_MEAN, IMAGENET_STD, device,
                         input_px, sam_input_px)


def load_timm_features(spec: ModelSpec, checkpoint: Path | None, device: torch.device,
                       input_px: int, sam_input_px: int = 1024, download: bool = False
                       ) -> VitFeatures:
    """A timm ViT by name: a registered foundation model, `timm:hf-hub:ORG/NAME` or
    `timm:ARCH` (see models/timm_source.py for where the files come from)."""
    source = resolve_source(spec, checkpoint, download)
    model = build_model(source)
    log.info("features: %s (%s, patch %s px) from %s", spec.name, source.arch,
             model.patch_embed.patch_size[0], source.weights)
    return VitFeatures(model, spec.name, source.sha256, source.mean, source.std, device,
                       input_px or sam_input_px, sam_input_px, spec.input_mpp)


def load_backbone(
    spec: ModelSpec, checkpoint: Path | None, device: torch.device, input_px: int,
    sam_input_px: int = 1024, download: bool = False,
) -> Backbone:
    if spec.name == "sam-encoder":
        return SamEncoderFeatures()
    if spec.name.startswith("dinov2_"):
        return Dinov2Features(spec, checkpoint, device, input_px, sam_input_px)
    return load_timm_features(spec, checkpoint, device, input_px, sam_input_px, download)
