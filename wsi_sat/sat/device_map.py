"""The map mode under a slide's decision, for a batch of tiles on the encoder's device.

Whole slides decode most references in the map mode, and with a slide's decision (see
wsi_sat.sat.open_set) a tile's map is a linear function of its fused patch features: colour /
stain statistics per patch, the SAM embedding, one dot product, a bilinear upsampling and a
logistic. All of it runs here in torch on the tensors the encoder left on its device, batched
over the encoder's batch, so a GPU does the per-tile work and the CPU only gets the probability
maps back. The same arithmetic as `patch_colour`, `ReferenceEmbedding.features`,
`LinearDecision.margin`, `upsample` and `map_probability` (float32; tested against them).
Pure: tensors in, tensors out.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from wsi_sat.sat.patches import _HED, _LAB, _XYZ_N
from wsi_sat.sat.reference import ReferenceEmbedding
from wsi_sat.sat.transduce import NegativeVeto

_LOG_1E6 = math.log(1e-6)


def pixel_colour_t(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 5, H, W) float32: L, a, b scaled to ~[-1, 1], H and E stains
    (as `wsi_sat.sat.patches.pixel_colour`)."""
    x = images.float() / 255.0
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = lin @ torch.as_tensor(_XYZ_N, device=x.device).T
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.0) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    lab_m = torch.as_tensor(_LAB, device=x.device)
    lab = f @ lab_m[:, :3].T + lab_m[:, 3]
    od = torch.log(x.clamp_min(1e-6)) / _LOG_1E6
    hed = (od @ torch.as_tensor(_HED, device=x.device).T).clamp_min(0.0)[..., :2]
    return torch.cat([lab, hed], dim=-1).permute(0, 3, 1, 2)


def patch_colour_t(images: torch.Tensor, patch_px: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 with H, W multiples of `patch_px` → (B, gh, gw, 10): per patch the
    mean and standard deviation of the 5 colour channels (as `patch_colour`)."""
    ch = pixel_colour_t(images)
    mean = F.avg_pool2d(ch, patch_px)
    sq = F.avg_pool2d(ch * ch, patch_px)
    std = (sq - mean * mean).clamp_min(0.0).sqrt()
    return torch.cat([mean, std], dim=1).permute(0, 2, 3, 1)


def decision_probability(embeddings: torch.Tensor, images: torch.Tensor,
                         reference: ReferenceEmbedding, patch_px: int, temperature: float
                         ) -> torch.Tensor:
    """(B, C, gh, gw) SAM embeddings and their (B, H, W, 3) uint8 tiles → (B, H, W) float32
    foreground probability of the slide's decision (`reference.decision` must be set)."""
    decision = reference.decision
    assert decision is not None, "decision_probability needs a slide's decision"
    b, c, gh, gw = embeddings.shape
    dev = embeddings.device
    emb = embeddings.float().permute(0, 2, 3, 1).reshape(b, gh * gw, c)
    emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    feats = emb
    if reference.colour_weight > 0:
        colour = patch_colour_t(images, patch_px).reshape(b, gh * gw, -1)
        mean = torch.as_tensor(reference.colour_mean, device=dev)
        std = torch.as_tensor(reference.colour_std, device=dev)
        z = (colour - mean) / std * (reference.colour_weight / math.sqrt(colour.shape[-1]))
        feats = torch.cat([emb, z], dim=-1)
        feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    coef = torch.as_tensor(np.asarray(decision.coef, np.float32), device=dev)
    score = (feats @ coef + decision.intercept) / decision.logit_scale  # margin - threshold
    if decision.veto is not None and decision.veto.negatives:
        score = torch.minimum(score, _veto_lead(feats, decision.veto))
    up = F.interpolate(score.reshape(b, 1, gh, gw), (images.shape[1], images.shape[2]),
                       mode="bilinear", align_corners=False)[:, 0]
    return torch.sigmoid(up / temperature)


def _veto_lead(feats: torch.Tensor, veto: NegativeVeto) -> torch.Tensor:
    """`NegativeVeto.lead` of (B, N, D) features, on their device."""
    k = veto.top_k

    def topk_mean(bank: np.ndarray) -> torch.Tensor:
        sim = feats @ torch.as_tensor(bank, device=feats.device).T
        return sim.topk(max(1, min(k, sim.shape[-1])), dim=-1).values.mean(dim=-1)

    sims = torch.stack([topk_mean(n) for n in veto.negatives])
    kind = (sims - torch.as_tensor(veto.open, device=feats.device)[:, None, None]).amax(dim=0)
    lead = topk_mean(veto.positives) - sims.amax(dim=0)
    return torch.where(kind >= 0, lead, torch.full_like(lead, float("inf")))


def fits_device_map(reference: ReferenceEmbedding, mode: str, backbone: str,
                    image_hw: tuple[int, int], patch_px: int) -> bool:
    """Whether `decision_probability` computes this tile's map: the map mode under a slide's
    decision, without a per-pixel model, SAM-encoder features, whole patches tiling the tile."""
    return (reference.decision is not None and mode == "map" and reference.pixel_model is None
            and backbone == "sam-encoder" and image_hw[0] % patch_px == 0
            and image_hw[1] % patch_px == 0)
