"""`wsi-sat eval`: Dice and IoU of predicted masks against ground truth, matched by file stem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi_sat.errors import InputImageError
from wsi_sat.io.image import IMAGE_SUFFIXES, read_mask
from wsi_sat.sat import dice, iou


@dataclass(frozen=True)
class ImageScore:
    stem: str
    dice: float
    iou: float


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputImageError(f"'{folder}' is not a folder of masks")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def evaluate_folders(pred_dir: Path, truth_dir: Path) -> list[ImageScore]:
    preds, truths = _by_stem(Path(pred_dir)), _by_stem(Path(truth_dir))
    common = sorted(set(preds) & set(truths))
    if not common:
        raise InputImageError(
            f"no mask in '{pred_dir}' has a same-stem mask in '{truth_dir}'; name them alike"
        )
    scores = []
    for stem in common:
        p, t = read_mask(preds[stem]), read_mask(truths[stem])
        if p.shape != t.shape:
            raise InputImageError(
                f"'{preds[stem]}' is {p.shape[1]}x{p.shape[0]} but its truth is "
                f"{t.shape[1]}x{t.shape[0]}; predictions must be at the original size"
            )
        scores.append(ImageScore(stem, dice(p, t), iou(p, t)))
    return scores


def summarise(scores: list[ImageScore]) -> dict[str, float]:
    d = np.array([s.dice for s in scores])
    j = np.array([s.iou for s in scores])
    return {
        "n": float(len(scores)),
        "dice_mean": float(d.mean()),
        "dice_median": float(np.median(d)),
        "iou_mean": float(j.mean()),
        "iou_median": float(np.median(j)),
    }
