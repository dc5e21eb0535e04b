"""GPU check of the engine: encoder and per-tile SAT on CUDA, fp32 vs bf16, lanes side by side.

    python benchmarks/gpu_check.py [--glas DIR] [--tiles 64] [--out gpu_check.json]

Needs a CUDA GPU and the GlaS tile set (default ../shared/data/tiles/glas_colon_glands, or
--glas with images/ and masks/). Reads no slide: 1024² tiles are cut from a mosaic of GlaS
images in memory, so it runs where the slide readers are not installed and measures what the
GPU changes — the encoder, and the SAT work per tile after it — apart from disk reads. The
reference is the protocol's ref0; tiles are scored by a slide decision fitted on a survey of
16 of them, as whole slides are. Prints and writes (JSON):

1. the encoder alone, ms per tile, batches of 8, fp32 and bf16 autocast;
2. agreement fp32 vs bf16: embedding cosine (min), mask Dice (mean, min);
3. end to end per tile (encoder + SAT, tiles in memory): tiles/s with 1, 4 and 8 lanes (threads
   sharing the models, as a worker runs them), and the ms per tile spent after the encoder
   (matching or the device map, decoding, clean-up) from the segmenter's own timings;
4. the CPU work a whole slide adds per tile after that (the glass rule and the polygons), ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.geometry import Scale  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.runtime.threads import torch_threads  # noqa: E402
from wsi_sat.sat import keep_on_tissue  # noqa: E402
from wsi_sat.sat.matching import match  # noqa: E402
from wsi_sat.sat.open_set import (  # noqa: E402
    shown_margin,
    slide_background,
    slide_decision,
    with_background,  # noqa: E402
)
from wsi_sat.sat.patches import patch_colour  # noqa: E402
from wsi_sat.segmenter import Segmenter  # noqa: E402
from wsi_sat.stitch.polygons import tile_objects  # noqa: E402
from wsi_sat.synthetic import mosaic  # noqa: E402

TILE = 1024


def glas_tiles(glas: Path, n_tiles: int) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    stems = sorted(p.stem for p in (glas / "images").iterdir())
    pairs = [(read_image(next((glas / "images").glob(s + ".*")))[0],
              read_mask(glas / "masks" / f"{s}.png")) for s in stems]
    image, _ = mosaic(pairs[1:], cols=8, cell_hw=(522, 775), gap_px=32)
    tiles = []
    for y in range(0, image.shape[0] - TILE + 1, TILE // 2):
        for x in range(0, image.shape[1] - TILE + 1, TILE // 2):
            tiles.append(np.ascontiguousarray(image[y : y + TILE, x : x + TILE]))
    reps = -(-n_tiles // len(tiles))
    return (tiles * reps)[:n_tiles], pairs[0]


def with_slide_decision(seg: Segmenter, reference, survey: list[np.ndarray]):
    """The reference plus a slide decision fitted on `survey` tiles (what run_slide does)."""
    cfg = seg.sat
    encoded = seg.engine.encode(survey, 1.0)
    grids = seg.backbone.grids(survey, encoded)
    feats = np.concatenate([reference.features(g, patch_colour(t, g.grid_hw, g.patch_hw))
                            for t, g in zip(survey, grids)])
    res = match(feats, reference.bank, reference.labels, cfg.matching.top_k, votes=False)
    shown = shown_margin(reference, feats, cfg.matching.top_k)
    emb = reference
    if shown is not None:
        idx, _ = slide_background(feats, shown, res.margin, reference.calibration.threshold,
                                  cfg.open_set, cfg.seed)
        emb = with_background(reference, feats[idx])
    again = match(feats, emb.bank, emb.labels, cfg.matching.top_k, votes=False)
    decision, _ = slide_decision(emb, feats, again.margin, cfg.matching, cfg.seed,
                                 cfg.open_set.negative_quantile)
    return replace(emb, decision=decision)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_lanes(seg: Segmenter, tiles: list[np.ndarray], reference, lanes: int
                ) -> tuple[float, list]:
    chunks = [tiles[i::lanes] for i in range(lanes)]
    threads = max(1, (torch.get_num_threads()) // lanes)

    def lane(chunk):
        with torch_threads(threads):
            return seg.segment(chunk, reference, mpp=0.62, encode_scale=1.0)

    _sync()
    t = time.perf_counter()
    with ThreadPoolExecutor(lanes) as pool:
        results = [r for part in pool.map(lane, chunks) for r in part]
    _sync()
    return time.perf_counter() - t, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glas", type=Path,
                        default=ROOT.parent / "shared" / "data" / "tiles" / "glas_colon_glands")
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--lanes", default="1,4,8")
    parser.add_argument("--device", default="cuda", help="cuda (cpu: to try the script)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible to torch")
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "none (cpu)"
    report: dict = {"gpu": gpu, "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(), "tiles": args.tiles}
    print(f"GPU: {gpu} | torch {torch.__version__} | CPU threads "
          f"{report['cpu_threads']}", flush=True)
    tiles, ref_pair = glas_tiles(args.glas, args.tiles)
    masks = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(None, [f"runtime.device={args.device}",
                                 f"runtime.precision={precision}"])
        seg = Segmenter.from_config(cfg)
        t = time.perf_counter()
        reference = seg.prepare_reference([ref_pair], encode_scale=1.0)
        ref_s = time.perf_counter() - t
        reference = with_slide_decision(seg, reference, tiles[:16])
        n_enc = min(32, len(tiles))
        seg.engine.encode(tiles[:8], 1.0)
        _sync()
        t = time.perf_counter()
        for i in range(0, n_enc, 8):
            seg.engine.encode(tiles[i : i + 8], 1.0)
        _sync()
        enc_ms = (time.perf_counter() - t) / n_enc * 1000
        emb = [e.embedding.float().flatten() for e in seg.engine.encode(tiles[:4], 1.0)]
        row = {"reference_s": ref_s, "encoder_ms_per_tile": enc_ms, "mode":
               reference.calibration.mode, "lanes": {}}
        for lanes in [int(x) for x in args.lanes.split(",")]:
            wall, results = timed_lanes(seg, tiles, reference, lanes)
            after = [sum(v for k, v in r.timings_s.items()
                         if k not in ("encode", "features", "read_wait", "read")) for r in results]
            row["lanes"][lanes] = {"tiles_per_s": len(tiles) / wall,
                                   "sat_ms_per_tile": 1000 * float(np.mean(after)),
                                   "stages_ms": {k: 1000 * float(np.mean([r.timings_s.get(k, 0.0)
                                                                          for r in results]))
                                                 for k in results[0].timings_s}}
            print(f"{precision}: {lanes} lane(s): {len(tiles) / wall:.1f} tiles/s, SAT after "
                  f"the encoder {1000 * np.mean(after):.0f} ms per tile "
                  f"(stages {row['lanes'][lanes]['stages_ms']})", flush=True)
            masks[precision] = [r.mask for r in results]
        t = time.perf_counter()
        full = np.ones((TILE, TILE), bool)
        for image, r in zip(tiles, results):
            kept = keep_on_tissue(r.mask, image, full, full, (255.0, 255.0, 255.0), r.patch_hw,
                                  cfg.wsi, Scale(0.62, 0.62))
            tile_objects(kept, None, r.prob, 0, (0, 0), Scale(0.62, 0.62), cfg.wsi.simplify_px)
        row["slide_cpu_ms_per_tile"] = (time.perf_counter() - t) / len(tiles) * 1000
        print(f"{precision}: glass rule + polygons {row['slide_cpu_ms_per_tile']:.0f} ms per "
              "tile (CPU, one thread)", flush=True)
        report[precision] = row
        report[f"{precision}_embeddings"] = emb
        print(f"{precision}: encoder {enc_ms:.1f} ms per tile (batches of 8), reference "
              f"{ref_s:.1f} s, mode {row['mode']}", flush=True)
    cos = [torch.nn.functional.cosine_similarity(a, b, dim=0).item()
           for a, b in zip(report.pop("fp32_embeddings"), report.pop("bf16_embeddings"))]
    dice = [2 * (a & b).sum() / max(1, a.sum() + b.sum())
            for a, b in zip(masks["fp32"], masks["bf16"])]
    report["agreement"] = {"embedding_cosine_min": min(cos), "mask_dice_mean": float(np.mean(dice)),
                           "mask_dice_min": float(np.min(dice))}
    print(f"fp32 vs bf16: embedding cosine min {min(cos):.4f}; mask Dice mean "
          f"{np.mean(dice):.4f}, min {np.min(dice):.4f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
