"""Seconds per 1024x1024 image and the share spent outside the image encoder, per mode.

    .venv/bin/python benchmarks/cost.py [--repeats 5]

Uses a 1024x1024 mosaic of GlaS images from ../shared (or the scikit-image IHC image, tiled,
when ../shared is absent) and the GlaS / IHC reference; times `Segmenter.segment` with the stage
timings it reports (encode, features, match, decode, postprocess).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.demo import dab_mask, demo_crops  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.segmenter import Segmenter  # noqa: E402

GLAS = ROOT.parent / "shared" / "data" / "tiles" / "glas_colon_glands"


def inputs() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    if GLAS.is_dir():
        stems = sorted(p.stem for p in (GLAS / "images").iterdir())
        imgs = [read_image(next((GLAS / "images").glob(s + ".*")))[0] for s in stems[1:5]]
        canvas = np.full((1024, 1024, 3), 255, np.uint8)
        for i, img in enumerate(imgs):
            y, x = divmod(i, 2)
            crop = img[:512, :512]
            canvas[y * 512:y * 512 + crop.shape[0], x * 512:x * 512 + crop.shape[1]] = crop
        ref = read_image(next((GLAS / "images").glob(stems[0] + ".*")))[0]
        return canvas, (ref, read_mask(GLAS / "masks" / f"{stems[0]}.png"))
    crops = demo_crops()
    ref = crops.pop("reference")
    img = np.tile(crops["target_top_right"], (4, 4, 1))
    return img, (ref, dab_mask(ref)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    image, ref = inputs()
    print("| mode | s per 1024² image | encoder s | outside encoder |")
    print("|---|---|---|---|")
    for mode in ("map", "union", "instances", "sam_instances"):
        cfg = load_config(None, [f"sat.decode.mode={mode}", "sat.pixel.enabled=false"])
        seg = Segmenter.from_config(cfg)
        reference = seg.prepare_reference([ref])
        seg.segment([image], reference)  # warm-up
        totals, encs = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = seg.segment([image], reference)[0]
            totals.append(time.perf_counter() - t)
            encs.append(res.timings_s["encode"])
        total, enc = float(np.median(totals)), float(np.median(encs))
        print(f"| {mode} | {total:.2f} | {enc:.2f} | {100 * (1 - enc / total):.0f} % |", flush=True)


if __name__ == "__main__":
    main()
