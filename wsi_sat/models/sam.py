"""SAM-family segmenters: MobileSAM (embedded) and SAM ViT-B/L/H (user checkpoints).

`SamEngine` encodes a batch of images once (the embedding serves both matching and decoding,
the way `SamPredictor` encodes once and prompts many times) and decodes batches of point prompts.
All coordinates it takes and returns are in ORIGINAL image pixels (x, y); the resize to the
encoder's input is applied here, together for pixels and prompt coordinates.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils.fusion import fuse_conv_bn_eval

from wsi_sat.errors import WeightsError
from wsi_sat.geometry import InputTransform
from wsi_sat.models.registry import ModelSpec, checked_weights
from wsi_sat.runtime.cpu import CpuMeter
from wsi_sat.runtime.device import autocast_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """One image after the SAM encoder.

    embedding: (C, G, G) float tensor on the model's device (G = 64 for 1024 input), in the
    encoder's own memory layout: channels-last (strides (1, G·C, C)) when the encoder runs
    channels-last, so the (G, G, C) patch rows of matching are a view of it, not a copy.
    original_hw: the image's own size; input_hw: its size after the longest-side resize.
    """

    embedding: torch.Tensor
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]

    @property
    def transform(self) -> InputTransform:
        """Original pixels ↔ encoder-input pixels of this image."""
        return InputTransform(self.original_hw, self.input_hw)

    @property
    def scale(self) -> float:
        """Encoder-input pixels per original pixel."""
        return self.transform.scale


def _build(arch: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mobile_sam re-registers timm names on import
        if arch == "vit_t":
            from mobile_sam import sam_model_registry as registry
        else:
            from segment_anything import sam_model_registry as registry
        return registry[arch](checkpoint=None)


def fold_batchnorm(module: torch.nn.Module) -> int:
    """Replace every conv + batch-norm pair (TinyViT's `Conv2d_BN`: children `c`, `bn`) by one
    convolution with the normalisation folded into its weights (eval mode; equal up to float
    rounding). Returns how many were folded."""
    folded = 0
    for name, child in list(module.named_children()):
        parts = dict(child.named_children())
        if (isinstance(parts.get("c"), torch.nn.Conv2d) and len(parts) == 2
                and isinstance(parts.get("bn"), torch.nn.BatchNorm2d)):
            setattr(module, name, fuse_conv_bn_eval(parts["c"], parts["bn"]))
            folded += 1
        else:
            folded += fold_batchnorm(child)
    return folded


def optimise_encoder(encoder: torch.nn.Module) -> bool:
    """Inference layout for an eval-mode image encoder, in place, same numbers (within 1e-5
    relative): batch norms folded into their convolutions and channels-last memory, which
    oneDNN's and cuDNN's convolution kernels prefer (MobileSAM's convolutional TinyViT encoder
    gains most: docs/performance.md). SAM ViT-B/L/H
    (no batch norm, convolutions only at their ends) are left as they are. Returns whether the
    encoder now wants channels-last input."""
    if not fold_batchnorm(encoder):
        return False
    encoder.to(memory_format=torch.channels_last)
    return True


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """torch.load on CPU, tensors only (no pickle code execution)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or non-checkpoint file
        raise WeightsError(
            f"'{path}' is not a readable PyTorch checkpoint ({exc.__class__.__name__}); "
            "download it again"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"'{path}' does not hold a state dict; pass the official checkpoint")
    return state


class SamEngine:
    """A loaded SAM model with batched encode and batched point decode."""

    def __init__(self, spec: ModelSpec, checkpoint: Path | None, device: torch.device,
                 precision: str = "fp32", encoder_batch: int = 0, optimise: bool = True,
                 compile_encoder: bool = False) -> None:
        path, digest = checked_weights(spec, checkpoint)
        model = _build(spec.arch)
        missing, unexpected = model.load_state_dict(load_state(path), strict=False)
        if missing:
            raise WeightsError(
                f"'{path}' does not fit {spec.name} ({len(missing)} missing tensors, e.g. "
                f"{missing[0]}); pass a checkpoint of that model"
            )
        if unexpected:
            log.debug("ignored %d unexpected tensors in %s", len(unexpected), path)
        model = model.to(device).eval()
        # optimise=False only for benchmarks' stock baselines (the published codes' layout)
        self.channels_last = optimise and optimise_encoder(model.image_encoder)
        self.model = model
        self.compiled = compile_encoder
        self._first_compiled_call = compile_encoder
        self._compile_lock = threading.Lock()
        self._encoder: torch.nn.Module | Callable[..., torch.Tensor] = model.image_encoder
        if compile_encoder:  # compiled lazily, at the first call; one input shape (see encode)
            self._encoder = torch.compile(model.image_encoder, dynamic=False)
        self.device = device
        self.spec = spec
        self.weights_path = path
        self.weights_sha256 = digest
        self.autocast = autocast_dtype(device, precision)
        self.encoder_batch = encoder_batch or (1 if device.type == "cpu" else 8)
        self.input_px: int = int(model.image_encoder.img_size)
        self.embed_grid: int = self.input_px // 16
        self.encoder_cpu = CpuMeter()  # CPU seconds of the threads inside `encode`
        log.info("loaded %s from %s on %s", spec.name, path, device)

    # -- geometry -----------------------------------------------------------------------------
    def input_size(self, hw: tuple[int, int], scale: float | None = None) -> tuple[int, int]:
        """Encoder-input size: longest side to the input size (SAM's default), or a fixed
        `scale` (encoder px per image px; whole slides keep tiles and reference at one scale),
        never larger than the input."""
        return InputTransform.fit(hw, self.input_px, scale).input_hw

    def _prepare(self, image: np.ndarray, scale: float | None = None
                 ) -> tuple[torch.Tensor, tuple[int, int]]:
        ih, iw = self.input_size(image.shape[:2], scale)
        if (ih, iw) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((iw, ih), Image.Resampling.BILINEAR))
        image = np.ascontiguousarray(image, dtype=np.uint8)
        x = torch.from_numpy(image if image.flags.writeable else image.copy())
        if self.device.type == "cuda":  # uint8 through pinned memory: 4x less to copy
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).float()
        x = self.model.preprocess(x[None])[0]  # normalise + pad to a square input
        return x, (ih, iw)

    # -- encoder ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, images: list[np.ndarray], scale: float | None = None) -> list[Encoded]:
        """Encode RGB uint8 images (H, W, 3) in batches of `encoder_batch` (see `input_size`);
        on CUDA under autocast when `precision` allows (the embedding is returned in fp32)."""
        with self.encoder_cpu.measure():
            return self._encode(images, scale)

    def _encode(self, images: list[np.ndarray], scale: float | None) -> list[Encoded]:
        out: list[Encoded] = []
        for start in range(0, len(images), self.encoder_batch):
            chunk = images[start : start + self.encoder_batch]
            prepared = [self._prepare(img, scale) for img in chunk]
            batch = torch.stack([p[0] for p in prepared])
            if self.compiled and len(chunk) < self.encoder_batch:  # one shape: no recompiles
                batch = torch.cat([batch, batch[-1:].expand(self.encoder_batch - len(chunk),
                                                            *batch.shape[1:])])
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            # kept in the encoder's layout: a channels-last output is already the (G, G, C)
            # rows matching reads (no conversion to NCHW and back)
            emb = self._run_encoder(batch)[: len(chunk)]
            out += [Encoded(emb[i], (img.shape[0], img.shape[1]), prepared[i][1])
                    for i, img in enumerate(chunk)]
        return out

    def _run_encoder(self, batch: torch.Tensor) -> torch.Tensor:
        if not self._first_compiled_call:
            return self._call_encoder(batch)
        with self._compile_lock:  # lanes: one thread compiles, the others wait for it
            if not self._first_compiled_call:
                return self._call_encoder(batch)
            try:
                return self._call_encoder(batch)
            except Exception as exc:  # noqa: BLE001 - any compile failure: fall back
                # torch.compile's failures (no C++ compiler, unsupported backend) surface at
                # the first call; the eager encoder computes the same embeddings
                log.warning("torch.compile of the image encoder failed (%s: %s); running it "
                            "eagerly", exc.__class__.__name__,
                            (str(exc).splitlines() or [""])[0][:200])
                self.compiled = False
                self._encoder = self.model.image_encoder
                return self._call_encoder(batch)
            finally:
                self._first_compiled_call = False

    def _call_encoder(self, batch: torch.Tensor) -> torch.Tensor:
        if self.autocast is None:
            return self._encoder(batch)
        with torch.autocast(device_type="cuda", dtype=self.autocast):
            return self._encoder(batch).float()

    # -- decoder ------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(
        self,
        enc: Encoded,
        points_xy: np.ndarray,
        labels: np.ndarray,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompts on one image.

        points_xy: (B, N, 2) original-pixel coordinates; labels: (B, N), 1 fg, 0 bg, -1 padding.
        mask_logits: optional (B, 1, 256, 256) low-res logits (SAM's mask prompt).
        Returns (low-res logits (B, 1, 256, 256), predicted IoU (B,)).
        """
        coords = torch.as_tensor(enc.transform.coords_to_input(points_xy), device=self.device)
        lab = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        sparse, dense = self.model.prompt_encoder(
            points=(coords, lab), boxes=None, masks=mask_logits
        )
        low, iou = self.model.mask_decoder(
            image_embeddings=enc.embedding[None],
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return low, iou[:, 0]

    def upscale(self, enc: Encoded, low_logits: torch.Tensor) -> torch.Tensor:
        """Low-res logits (B, 1, 256, 256) → logits at the original size (B, H, W)."""
        x = F.interpolate(low_logits, (self.input_px, self.input_px), mode="bilinear",
                          align_corners=False)
        x = x[..., : enc.input_hw[0], : enc.input_hw[1]]
        x = F.interpolate(x, enc.original_hw, mode="bilinear", align_corners=False)
        return x[:, 0]

    def map_to_mask_prompt(self, enc: Encoded, prob: np.ndarray, gain: float
                           ) -> torch.Tensor:
        """An original-size probability map → SAM's (1, 1, 256, 256) mask-prompt logits
        (`gain` x the log-odds)."""
        p = torch.as_tensor(prob, dtype=torch.float32, device=self.device)[None, None]
        p = F.interpolate(p, enc.input_hw, mode="bilinear", align_corners=False)
        p = F.pad(p, (0, self.input_px - enc.input_hw[1], 0, self.input_px - enc.input_hw[0]))
        p = F.interpolate(p, (self.input_px // 4, self.input_px // 4), mode="area")
        p = p.clamp(1e-3, 1 - 1e-3)
        return torch.log(p / (1 - p)) * gain
