"""Does accuracy survive tiling? A GlaS mosaic slide with known ground truth, end to end.

    .venv/bin/python benchmarks/wsi_accuracy.py [--images 12] [--workers 0,1,2]

Builds (in a temporary folder, never committed) a pyramidal TIFF mosaic with real MPP metadata
(0.62 µm/px) from GlaS images + masks of ../shared/data/tiles/glas_colon_glands, on glass, and
runs the whole-slide pipeline with another GlaS image as reference (the protocol's ref0, not in
the mosaic). Prints: Dice of the OME-Zarr level 0 against the mosaic's ground truth (pooled and
mean per image cell) next to the engine's own Dice on the same images segmented one by one;
IoU of the GeoJSON polygons rasterised back against the Zarr mask; polygons vs connected objects
(an object split at a tile border would show as extra polygons); tiles/s and peak RSS per worker
count.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from shapely.geometry import shape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat import api  # noqa: E402
from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.raster import rasterise as fill  # noqa: E402
from wsi_sat.raster import resize_mask
from wsi_sat.reference import Reference  # noqa: E402
from wsi_sat.runtime.cluster import dask_client  # noqa: E402
from wsi_sat.sat.metrics import dice, iou  # noqa: E402
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

GLAS = ROOT.parent / "shared" / "data" / "tiles" / "glas_colon_glands"
MPP = 0.62
CELL = (522, 775)
GAP = 96


def rasterise(geo: dict, shape_hw: tuple[int, int]) -> np.ndarray:
    """GeoJSON polygons (pixel-edge coordinates) → a mask (pixel centres at +0.5)."""
    return fill([shape(f["geometry"]) for f in geo["features"]], shape_hw, lambda xy: xy - 0.5)


def peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--mpp", type=float, default=None,
                        help="working µm/px of the slide run (default: the slide's, 0.62)")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    if not GLAS.is_dir():
        sys.exit(f"needs {GLAS}")
    stems = sorted(p.stem for p in (GLAS / "images").iterdir())
    ref_stem, pool = stems[0], stems[1:]
    chosen = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, args.images).round()]
    pairs = []
    for s in chosen:
        img, _ = read_image(next((GLAS / "images").glob(s + ".*")))
        pairs.append((img, read_mask(GLAS / "masks" / f"{s}.png")))
    cols = 4
    slide_img, truth = mosaic(pairs, cols=cols, cell_hw=CELL, gap_px=GAP)
    valid = np.zeros(truth.shape, bool)  # pixels that belong to an image cell
    cells = []
    for i, (img, _) in enumerate(pairs):
        r, c = divmod(i, cols)
        y, x = GAP + r * (CELL[0] + GAP), GAP + c * (CELL[1] + GAP)
        h, w = min(CELL[0], img.shape[0]), min(CELL[1], img.shape[1])
        valid[y : y + h, x : x + w] = True
        cells.append((y, x, h, w))

    cfg = load_config(None, ["wsi.tile_px=1024", "wsi.overlap_px=128", *args.set])
    seg = api.load_segmenter(cfg)
    ref_img, _ = read_image(next((GLAS / "images").glob(ref_stem + ".*")))
    ref_pair = (ref_img, read_mask(GLAS / "masks" / f"{ref_stem}.png"))
    reference = seg.prepare_reference([ref_pair])  # the engine's own scale, image by image
    # the reference at the working resolution of the slide run, encoded at the tiles' scale
    slide_reference = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference(ref_stem, *ref_pair, "mask")], reference_mpp=MPP,
        working_mpp=args.mpp or MPP))

    # the engine alone, image by image
    per_image = np.zeros(truth.shape, bool)
    engine_dice = []
    t = time.perf_counter()
    for (img, m), (y, x, h, w) in zip(pairs, cells):
        res = seg.segment([img], reference, mpp=MPP)[0]
        per_image[y : y + h, x : x + w] = res.mask[:h, :w]
        engine_dice.append(dice(res.mask, m))
    engine_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        slide_path = Path(tmp) / "glas_mosaic.tif"
        write_pyramidal_tiff(slide_path, slide_img, MPP, tile_px=256)
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            out = Path(tmp) / f"out{workers}"
            wcfg = cfg.model_copy(deep=True)
            wcfg.wsi.workers = workers
            t = time.perf_counter()
            with dask_client(wcfg) as client:
                summary = api.run_slide(slide_path, slide_reference, seg, wcfg, out,
                                        mpp=args.mpp or MPP, client=client)
            wall = time.perf_counter() - t
            run = json.loads((out / "glas_mosaic.run.json").read_text())
            rows.append((workers, summary.tiles_segmented, wall, peak_rss_mb(),
                         run["tiles"]["grid"]))
            if workers == int(args.workers.split(",")[0]):
                zarr_mask = read_level(out / "glas_mosaic.ome.zarr", 0) > 0
                if zarr_mask.shape != truth.shape:  # working resolution ≠ slide level 0
                    zarr_mask = resize_mask(zarr_mask, truth.shape[::-1])
                geo = json.loads((out / "glas_mosaic.geojson").read_text())
        mosaic_cells = [dice(zarr_mask[y : y + h, x : x + w], truth[y : y + h, x : x + w])
                        for (y, x, h, w) in cells]
        _, n_objects = ndimage.label(zarr_mask, structure=np.ones((3, 3)))
        print(f"GlaS mosaic: {len(pairs)} images, {slide_img.shape[1]}x{slide_img.shape[0]} px "
              f"at {MPP} µm/px, reference {ref_stem}")
        print("| measure | engine per image | whole-slide (OME-Zarr level 0) | difference |")
        print("|---|---|---|---|")
        print(f"| mean Dice per image | {np.mean(engine_dice):.3f} | {np.mean(mosaic_cells):.3f} "
              f"| {np.mean(mosaic_cells) - np.mean(engine_dice):+.3f} |")
        pooled_engine = dice(per_image[valid], truth[valid])
        pooled_slide = dice(zarr_mask[valid], truth[valid])
        print(f"| pooled Dice (image pixels) | {pooled_engine:.3f} | {pooled_slide:.3f} | "
              f"{pooled_slide - pooled_engine:+.3f} |")
        print(f"| Dice over the whole slide (glass included) | - | "
              f"{dice(zarr_mask, truth):.3f} | |")
        print(f"GeoJSON rasterised vs Zarr mask: IoU {iou(rasterise(geo, truth.shape), zarr_mask):.4f}; "
              f"{len(geo['features'])} polygons for {n_objects} connected objects")
        print(f"engine alone: {engine_s / len(pairs):.2f} s/image")
        print("| workers | tiles segmented / grid | wall s | tiles/s | peak RSS MB |")
        print("|---|---|---|---|---|")
        for workers, tiles, wall, rss, grid in rows:
            print(f"| {workers} | {tiles}/{grid} | {wall:.1f} | {tiles / wall:.3f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
