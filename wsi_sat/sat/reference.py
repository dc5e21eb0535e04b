"""The reference, encoded once: a labelled bank of patch features shared by every target.

Foreground / background patches come from the mask by covered fraction; patches in between are
ambiguous and left out. Each bank patch keeps its position in its reference's own pixels, so
self-calibration can leave a neighbourhood out when it scores the reference against itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from wsi_sat.config import DecodeMode, ReferenceConfig
from wsi_sat.errors import ReferenceError
from wsi_sat.sat.engine import PatchGrid
from wsi_sat.sat.instances import ObjectSizes
from wsi_sat.sat.matching import fuse
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.transduce import LinearDecision
from wsi_sat.sat.views import View


@dataclass(frozen=True)
class ReferenceView:
    """One encoded view of a reference (the original or a flipped / rotated / rescaled copy),
    or of a negative example (`negative`: its mask marks non-target pixels)."""

    ref_id: int
    view: View
    image: np.ndarray  # view pixels, RGB uint8
    mask: np.ndarray  # view mask, bool (a negative's: its non-target pixels)
    grid: PatchGrid
    colour: np.ndarray  # (gh, gw, C) patch colour features
    fraction: np.ndarray  # (gh, gw) mask coverage
    encoded: object = None  # the SAM `Encoding` of this view, for decoding during calibration
    negative: bool = False


@dataclass(frozen=True)
class Calibration:
    """What self-calibration chose, and the evidence."""

    threshold: float
    mode: DecodeMode
    use_pixel: bool
    scores: dict[str, float] = field(default_factory=dict)
    open_threshold: float | None = None  # least fg similarity of a real target patch


@dataclass(frozen=True)
class ReferenceEmbedding:
    bank: np.ndarray  # (M, D) unit-norm fused features
    labels: np.ndarray  # (M,) 1 fg, 0 bg
    pos_xy: np.ndarray  # (M, 2) patch centre in its reference's original pixels
    ref_ids: np.ndarray  # (M,)
    negative: np.ndarray  # (M,) bool: a patch of a negative example (background by the user)
    colour_mean: np.ndarray
    colour_std: np.ndarray
    colour_weight: float
    fg_fraction: float  # mean mask coverage of the references
    calibration: Calibration
    pixel_model: object | None = None
    objects: ObjectSizes | None = None  # the references' objects (instances: their size)
    # a whole slide's decision, fitted once on its survey and this bank (sat.open_set): used
    # for every tile instead of refitting the self-training tile by tile
    decision: LinearDecision | None = None

    def features(self, grid: PatchGrid, colour: np.ndarray) -> np.ndarray:
        """Fused (gh*gw, D) features of any image's grid, on this reference's colour scale."""
        gh, gw = grid.grid_hw
        return fuse(
            grid.feats.reshape(gh * gw, -1),
            colour.reshape(gh * gw, -1),
            self.colour_mean,
            self.colour_std,
            self.colour_weight,
        )

    def with_calibration(self, calibration: Calibration, pixel_model: object | None
                         ) -> ReferenceEmbedding:
        return replace(self, calibration=calibration, pixel_model=pixel_model)


def validate_reference_mask(mask: np.ndarray, image_hw: tuple[int, int], name: str) -> None:
    if mask.shape != image_hw:
        raise ReferenceError(
            f"reference mask of '{name}' is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image_hw[1]}x{image_hw[0]}; give a mask of the same size"
        )
    frac = float(mask.mean())
    if frac == 0.0:
        raise ReferenceError(f"reference mask of '{name}' is empty; mark the structure in it")
    if frac == 1.0:
        raise ReferenceError(
            f"reference mask of '{name}' covers the whole image; include some background"
        )


def validate_negative_mask(mask: np.ndarray, image_hw: tuple[int, int], name: str) -> None:
    if mask.shape != image_hw:
        raise ReferenceError(
            f"negative mask of '{name}' is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image_hw[1]}x{image_hw[0]}; give a mask of the same size"
        )
    if not mask.any():
        raise ReferenceError(f"negative mask of '{name}' is empty; mark the non-target tissue")


def make_view(ref_id: int, view: View, image: np.ndarray, mask: np.ndarray, grid: PatchGrid,
              encoded: object = None, negative: bool = False) -> ReferenceView:
    return ReferenceView(
        ref_id,
        view,
        image,
        mask,
        grid,
        patch_colour(image, grid.grid_hw, grid.patch_hw),
        mask_fraction(mask, grid.grid_hw, grid.patch_hw),
        encoded,
        negative,
    )


def _fair_share(idx: np.ndarray, owners: np.ndarray, cap: int, rng: np.random.Generator
                ) -> np.ndarray:
    """At most `cap` of `idx`: every example (`owners`) first keeps up to a floor of
    cap / (2 x examples) of its patches, the rest of the cap goes to the larger ones in
    proportion to what they have left (seeded): a small example (a correction) keeps all its
    patches, and large examples are not evened out (an even share gave a second, unlike
    reference the weight of the first)."""
    if len(idx) <= cap:
        return idx
    ids, counts = np.unique(owners, return_counts=True)
    quota = np.minimum(counts, cap // (2 * len(ids)))
    rest = counts - quota
    extra = np.floor((cap - quota.sum()) * rest / max(1, rest.sum())).astype(np.int64)
    extra[np.argsort(-rest)[: cap - quota.sum() - extra.sum()]] += 1  # the rounding remainder
    quota = np.minimum(counts, quota + extra)
    out = [rng.choice(idx[owners == i], q, replace=False) for i, q in zip(ids, quota) if q]
    return np.sort(np.concatenate(out))


def build_bank(views: list[ReferenceView], cfg: ReferenceConfig, colour_weight: float,
               default_threshold: float, seed: int) -> ReferenceEmbedding:
    """Pool the labelled patches of every view into one bank (capped per class, seeded)."""
    # the colour scale is the references' own (negative examples do not move it)
    colours = np.concatenate([v.colour.reshape(-1, v.colour.shape[-1]) for v in views
                              if not v.negative] or
                             [v.colour.reshape(-1, v.colour.shape[-1]) for v in views])
    colour_mean = colours.mean(axis=0)
    colour_std = np.maximum(colours.std(axis=0), 1e-3)
    feats, labels, pos, refs, neg = [], [], [], [], []
    for v in views:
        gh, gw = v.grid.grid_hw
        f = fuse(v.grid.feats.reshape(gh * gw, -1), v.colour.reshape(gh * gw, -1),
                 colour_mean, colour_std, colour_weight)
        frac = v.fraction.ravel()
        lab = np.full(gh * gw, -1, dtype=np.int8)
        if v.negative:  # a negative example: the patches mostly in its mask are background
            lab[frac >= cfg.fg_min_fraction] = 0
        else:
            lab[frac >= cfg.fg_min_fraction] = 1
            lab[frac <= cfg.bg_max_fraction] = 0
        keep = lab >= 0
        feats.append(f[keep])
        labels.append(lab[keep])
        pos.append(v.view.to_original(v.grid.centres_xy()[keep]))
        refs.append(np.full(int(keep.sum()), v.ref_id, dtype=np.int32))
        neg.append(np.full(int(keep.sum()), v.negative))
    bank = np.concatenate(feats)
    neg_all = np.concatenate(neg)
    lab_all = np.concatenate(labels)
    pos_all = np.concatenate(pos).astype(np.float32)
    ref_all = np.concatenate(refs)
    rng = np.random.default_rng(seed)
    keep_idx = []
    # capped per class, and negative examples apart (they never crowd the references' own
    # background out of the bank)
    for cls, negative in ((0, False), (1, False), (0, True)):
        idx = np.nonzero((lab_all == cls) & (neg_all == negative))[0]
        keep_idx.append(_fair_share(idx, ref_all[idx], cfg.max_bank_patches, rng))
    sel = np.concatenate(keep_idx)
    originals = [v for v in views if v.view.is_identity and not v.negative]
    fg_fraction = float(np.mean([v.mask.mean() for v in originals or views]))
    return ReferenceEmbedding(
        bank=bank[sel],
        labels=lab_all[sel],
        pos_xy=pos_all[sel],
        ref_ids=ref_all[sel],
        negative=neg_all[sel],
        colour_mean=colour_mean.astype(np.float32),
        colour_std=colour_std.astype(np.float32),
        colour_weight=colour_weight,
        fg_fraction=fg_fraction,
        calibration=Calibration(default_threshold, "map", False),
    )
