"""CPU milliseconds of each step after the encoder, per tile, on one thread with nothing beside it.

    .venv/bin/python benchmarks/tile_cpu.py [--size 4096] [--tiles 8] [--set key=value ...]

Builds the dense benchmark slide of benchmarks/throughput.py (GlaS images edge to edge, 0.62
µm/px; never committed) at `--size` px, prepares the protocol's reference (GlaS ref0), surveys the
slide as a run does (the slide's decision), then runs `--tiles` tiles through the whole-slide
per-tile steps one after the other on this thread — read, encode, the method after the encoder
(`segment_image`: colour statistics, features, the decision's map, clean-up), the glass rule and
the polygons — timing each by this thread's CPU time (`time.thread_time`, torch and OpenCV held to
one thread, so nothing escapes it). Prints ms per tile by step. What a whole run adds on top
(per-slide steps, lanes side by side) is in the run's `cpu_s` (benchmarks/throughput.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput as tp  # noqa: E402

from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.slide import Slide  # noqa: E402
from wsi_sat.pipeline.batch import read_tile  # noqa: E402
from wsi_sat.pipeline.plan import plan_slide  # noqa: E402
from wsi_sat.pipeline.survey import survey_slide  # noqa: E402
from wsi_sat.reference import (  # noqa: E402
    Reference,  # noqa: E402
    ReferenceSet,
    prepare_slide_reference,
)
from wsi_sat.sat import keep_on_tissue  # noqa: E402
from wsi_sat.sat.segment import segment_image  # noqa: E402
from wsi_sat.segmenter import Segmenter  # noqa: E402
from wsi_sat.stitch.polygons import tile_objects  # noqa: E402
from wsi_sat.tiling.tissue import tile_mask  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="slide side, px")
    parser.add_argument("--tiles", type=int, default=8, help="tiles timed")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = load_config(None, ["runtime.lanes=1", "runtime.threads=1", *args.set])
    seg = Segmenter.from_config(cfg)
    pairs, (ref_img, ref_mask) = tp.glas_images()
    reference = prepare_slide_reference(seg, ReferenceSet(
        references=[Reference("ref0", ref_img, ref_mask, "mask")]))
    spent: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dense.tif"
        layout = tp.dense_layout(args.size, pairs)
        tp.write_layout_tiff(path, (args.size, args.size),
                             [(x, y, img) for x, y, img, _ in layout], tp.MPP)
        with Slide(path, None) as slide:
            plan = plan_slide(slide, cfg.wsi, slide.require_mpp())
            embedding = survey_slide(slide, plan, reference.embedding, seg).embedding
            scale = seg.tile_scale(cfg.wsi.tile_px)
            tiles = plan.tiles[: args.tiles]
            for tile in tiles:
                t = time.thread_time()
                image = read_tile(slide, plan.scale, tile, cfg.wsi.tile_px)
                spent["read"] += time.thread_time() - t
                t = time.thread_time()
                enc = seg.engine.encode([image], scale)[0]
                grid = seg.backbone.grids([image], [enc])[0]
                spent["encode"] += time.thread_time() - t
                t = time.thread_time()
                tissue = tile_mask(plan.tissue.tissue, tile, plan.grid.working_size)
                keep = tile_mask(plan.tissue.keep, tile, plan.grid.working_size)
                spent["tissue masks"] += time.thread_time() - t
                stages: dict[str, float] = {}
                t = time.thread_time()
                res = segment_image(seg.engine, enc, image, grid, embedding, cfg.sat,
                                    mpp=plan.scale.working_mpp, tissue=tissue, timings=stages)
                spent["segment_image"] += time.thread_time() - t
                for stage in ("match", "decode", "postprocess"):
                    spent[f"  {stage}"] += stages.get(stage, 0.0)
                t = time.thread_time()
                mask = keep_on_tissue(res.mask, image, tissue, keep, plan.tissue.glass_rgb,
                                      res.patch_hw, cfg.wsi, plan.scale)
                spent["glass rule"] += time.thread_time() - t
                t = time.thread_time()
                core = tile.core_in_read
                prob = res.prob[core] if res.prob is not None else mask[core].astype("float32")
                tile_objects(mask[core], None, prob, tile.index, (tile.core.x0, tile.core.y0),
                             plan.scale, cfg.wsi.simplify_px)
                spent["polygons"] += time.thread_time() - t
    n = len(tiles)
    after = sum(v for k, v in spent.items() if k not in ("encode", "read")
                and not k.startswith("  "))
    print(f"\n{n} tiles of a dense {args.size} px slide, decision "
          f"{'fitted' if embedding.decision is not None else 'not fitted'}, mode "
          f"{embedding.calibration.mode}; CPU ms per tile on one thread:\n")
    print("| step | ms |\n|---|---|")
    for k, v in spent.items():
        print(f"| {k} | {1000 * v / n:.1f} |")
    print(f"| after the encoder, without reading | {1000 * after / n:.1f} |")
    print("\n(segment_image's stages are wall times: match = colour statistics, features, the "
          "decision and the map; decode = thresholding; postprocess = clean-up)")


if __name__ == "__main__":
    main()
