"""Nuclei on a real section from one MoNuSeg tile: sizes kept in range, a count checked another way.

    .venv/bin/python benchmarks/nuclei_slide.py [--out /tmp/nuclei_slide] [--set key=value ...]

Runs `wsi-sat run` (in process) on the real skin section ../shared/data/slides/CMU-1-Small-Region.svs
at 0.5 µm/px with the first MoNuSeg tile that has an instance mask as the reference (image and
instance labels, 0.25 µm/px), decoding mode as the calibration chooses (auto). Prints the run's
mode, its object count, objects per mm² of tissue, the largest object against 10x the
reference's largest nucleus, and the objects flagged for size.

The count made another way: haematoxylin peaks. Colour deconvolution (scikit-image `rgb2hed`,
Ruifrok's H&E vectors), the H channel smoothed at a quarter of the reference's median nucleus
diameter, pixels above the Otsu cut of H within the run's tissue taken as nuclear, and one
nucleus per local maximum at least a median nucleus radius from the next. Both counts are also
made on four 400 µm crops, written to `--out` with the run's objects (green outlines) and the
peaks (red dots) for checking by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from skimage.color import rgb2hed
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat import api  # noqa: E402
from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.image import read_image, read_labels  # noqa: E402
from wsi_sat.io.slide import Slide  # noqa: E402
from wsi_sat.reference import Reference  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SLIDE = SHARED / "slides" / "CMU-1-Small-Region.svs"
MONUSEG = SHARED / "tiles" / "monuseg_nuclei"
REF_MPP, MPP, CROP_UM = 0.25, 0.5, 400.0


def haematoxylin_peaks(rgb: np.ndarray, tissue: np.ndarray, radius_px: float,
                       cut: float | None = None) -> tuple[np.ndarray, float]:
    """(N, 2) row/col of haematoxylin maxima inside `tissue`, and the H cut used (Otsu over
    the tissue unless given)."""
    h = rgb2hed(rgb)[..., 0].astype(np.float32)
    h = cv2.GaussianBlur(h, (0, 0), max(0.5, radius_px / 2))
    if cut is None:
        cut = float(threshold_otsu(h[tissue]))
    nuclear = (h > cut) & tissue
    peaks = peak_local_max(h, min_distance=max(1, int(round(radius_px))),
                           labels=nuclear.astype(np.int32), exclude_border=False)
    return peaks, cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/nuclei_slide"))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    if not SLIDE.is_file() or not (MONUSEG / "instance_masks").is_dir():
        sys.exit(f"needs {SLIDE} and {MONUSEG / 'instance_masks'}")
    stem = sorted(p.stem for p in (MONUSEG / "instance_masks").iterdir())[0]
    image, _ = read_image(next((MONUSEG / "images").glob(stem + ".*")))
    labels = read_labels(MONUSEG / "instance_masks" / f"{stem}.png")
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0] * REF_MPP**2
    radius_um = float(np.sqrt(np.median(areas) / np.pi))

    cfg = load_config(None, args.set)
    seg = api.load_segmenter(cfg)
    reference = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference(stem, image, labels > 0, "mask", labels)], reference_mpp=REF_MPP,
        working_mpp=MPP))
    out = args.out / "run"
    args.out.mkdir(parents=True, exist_ok=True)
    api.run_slide(SLIDE, reference, seg, cfg, out, mpp=MPP)
    run = json.loads((out / f"{SLIDE.stem}.run.json").read_text())
    objects = pd.read_csv(out / f"{SLIDE.stem}.objects.csv")
    zarr = read_level(out / f"{SLIDE.stem}.ome.zarr", 0)
    tissue_mm2 = run["tissue"]["area_mm2"]

    with Slide(SLIDE) as slide:
        w0, h0 = slide.dimensions
        f = MPP / slide.require_mpp()
        rgb = slide.read(0, 0, w0, h0, zarr.shape[::-1])
    tissue = cv2.GaussianBlur(rgb.min(axis=2), (0, 0), 4) < 215  # not glass
    peaks, cut = haematoxylin_peaks(rgb, tissue, radius_um / MPP)
    tissue_px_mm2 = tissue.sum() * (MPP / 1000) ** 2

    print(f"{SLIDE.name} at {MPP} µm/px ({zarr.shape[1]}x{zarr.shape[0]} px), reference "
          f"{stem}: {len(areas)} nuclei, median {np.median(areas):.0f} µm², largest "
          f"{areas.max():.0f} µm²")
    print(f"run: mode {run['calibration']['mode']}, {run['objects']} objects, "
          f"{run['objects'] / tissue_mm2:.0f} per mm² of tissue ({tissue_mm2:.3f} mm²), largest "
          f"{objects['area_um2'].max():.0f} µm² (10x the reference's largest: "
          f"{10 * areas.max():.0f}), flagged {run.get('objects_flagged', 0)}")
    print(f"haematoxylin peaks: {len(peaks)} in {tissue_px_mm2:.3f} mm² of non-glass, "
          f"{len(peaks) / tissue_px_mm2:.0f} per mm²; ratio run / peaks "
          f"{(run['objects'] / tissue_mm2) / (len(peaks) / tissue_px_mm2):.2f}")
    crop_px = int(CROP_UM / MPP)
    cands = [(y, x) for y in range(0, zarr.shape[0] - crop_px + 1, crop_px)
             for x in range(0, zarr.shape[1] - crop_px + 1, crop_px)
             if tissue[y : y + crop_px, x : x + crop_px].mean() > 0.5]  # apart, mostly tissue
    rng = np.random.default_rng(0)
    cx, cy = objects["centroid_x_px"].to_numpy() / f, objects["centroid_y_px"].to_numpy() / f
    print("| crop (x, y px) | run objects | haematoxylin peaks | ratio |\n|---|---|---|---|")
    for i in sorted(rng.choice(len(cands), size=min(4, len(cands)), replace=False)):
        y, x = cands[i]
        win = (slice(y, y + crop_px), slice(x, x + crop_px))
        lab = zarr[win]
        n_run = int(((cx >= x) & (cx < x + crop_px) & (cy >= y) & (cy < y + crop_px)).sum())
        p, _ = haematoxylin_peaks(rgb[win], tissue[win], radius_um / MPP, cut)
        print(f"| {x}, {y} | {n_run} | {len(p)} | {n_run / max(1, len(p)):.2f} |")
        view = cv2.cvtColor(rgb[win].copy(), cv2.COLOR_RGB2BGR)
        edges = cv2.morphologyEx((lab > 0).astype(np.uint8), cv2.MORPH_GRADIENT,
                                 np.ones((3, 3), np.uint8)) > 0
        edges |= cv2.morphologyEx(lab.astype(np.float32), cv2.MORPH_GRADIENT,
                                  np.ones((3, 3), np.uint8)) > 0
        view[edges] = (0, 200, 0)
        for r, c in p:
            cv2.circle(view, (int(c), int(r)), 2, (0, 0, 255), -1)
        cv2.imwrite(str(args.out / f"crop_{x}_{y}.png"), view)
    print(f"(level-0 px = working px x {f:.3f})")


if __name__ == "__main__":
    main()
