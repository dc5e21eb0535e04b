"""SAM decoding of engineered prompts.

* union: every point in one decoder call (as GBMSeg), optionally with the matching map as SAM's
  mask prompt, optionally refined by a second pass fed with the first pass's logits.
* instances: one decoder call per positive point (all batched through the decoder), each with
  the negatives, kept when the matching map agrees, then merged by mask non-maximum suppression.
"""

from __future__ import annotations

import numpy as np

from wsi_sat.config import DecodeConfig
from wsi_sat.sat.engine import Encoding, Engine
from wsi_sat.sat.prompts import Prompts


def _points(prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
    xy = np.concatenate([prompts.pos_xy, prompts.neg_xy]).astype(np.float32)
    labels = np.concatenate([np.ones(len(prompts.pos_xy)), np.zeros(len(prompts.neg_xy))])
    return xy, labels


def decode_union(engine: Engine, enc: Encoding, prompts: Prompts,
                 map_prob: np.ndarray | None, cfg: DecodeConfig) -> np.ndarray:
    """One mask (original size, bool) from all points at once."""
    xy, labels = _points(prompts)
    mask_prompt = (engine.map_to_mask_prompt(enc, map_prob, cfg.mask_prompt_gain)
                   if map_prob is not None else None)
    low, _ = engine.decode(enc, xy[None], labels[None], mask_prompt)
    if cfg.refine:
        low, _ = engine.decode(enc, xy[None], labels[None], low)
    return (engine.upscale(enc, low)[0] > 0).cpu().numpy()


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of masks kept by greedy NMS on mask IoU (highest score first)."""
    order = np.argsort(-scores)
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    areas = flat.sum(axis=1)
    inter = flat @ flat.T
    kept: list[int] = []
    for i in order:
        if areas[i] == 0:
            continue
        ious = [inter[i, j] / (areas[i] + areas[j] - inter[i, j]) for j in kept]
        if not ious or max(ious) <= iou_threshold:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def decode_instances(engine: Engine, enc: Encoding, prompts: Prompts, map_fg: np.ndarray,
                     cfg: DecodeConfig) -> np.ndarray:
    """Label image (original size, int32, 0 = background) from one decode per positive point.

    A candidate instance is kept when at least `cfg.instance_min_agreement` of it lies where the
    matching map says foreground (`map_fg`, bool at original size), which rejects SAM masks
    that leaked into background.
    """
    h, w = enc.original_hw
    labels_out = np.zeros((h, w), dtype=np.int32)
    n_pos = len(prompts.pos_xy)
    if n_pos == 0:
        return labels_out
    neg = prompts.neg_xy
    masks, scores = [], []
    for start in range(0, n_pos, cfg.instance_batch):
        pos = prompts.pos_xy[start : start + cfg.instance_batch]
        b = len(pos)
        xy = np.concatenate([pos[:, None, :], np.broadcast_to(neg, (b, *neg.shape))], axis=1)
        lab = np.concatenate([np.ones((b, 1)), np.zeros((b, len(neg)))], axis=1)
        low, iou = engine.decode(enc, xy, lab)
        if cfg.refine:
            low, iou = engine.decode(enc, xy, lab, low)
        m = (engine.upscale(enc, low) > 0).cpu().numpy()
        masks.append(m)
        scores.append(iou.float().cpu().numpy())
    all_masks = np.concatenate(masks)
    all_scores = np.concatenate(scores)
    agree = np.array([map_fg[m].mean() if m.any() else 0.0 for m in all_masks])
    good = agree >= cfg.instance_min_agreement
    if not good.any():
        return labels_out
    idx = np.nonzero(good)[0]
    kept = idx[mask_nms(all_masks[idx], all_scores[idx] * agree[idx], cfg.nms_iou)]
    # paint low scores first so the best instance wins overlaps
    for label, i in enumerate(kept[np.argsort(all_scores[kept] * agree[kept])], start=1):
        labels_out[all_masks[i]] = label
    return _relabel(labels_out)


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(labels.max() + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[labels]


def map_probability(margin_up: np.ndarray, threshold: float, temperature: float
                    ) -> np.ndarray:
    """Matching margin (original size) → foreground probability around the threshold:
    1 / (1 + exp(-(margin - threshold) / temperature)), computed in place in one array."""
    z = np.subtract(threshold, margin_up)  # = -(margin - threshold), exactly
    z /= temperature
    np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)
