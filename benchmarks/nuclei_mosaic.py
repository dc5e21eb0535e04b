"""Do nuclei counts survive tiling? A MoNuSeg mosaic slide with instance truth, end to end.

    .venv/bin/python benchmarks/nuclei_mosaic.py [--modes instances,map] [--set key=value ...]

Builds (in a temporary folder, never committed) a pyramidal TIFF mosaic at 0.25 µm/px from the
MoNuSeg tiles of ../shared/data/tiles/monuseg_nuclei that have instance masks, on glass; the
reference is the first of them (its image and instance labels), the other twelve make the
slide. Runs the engine image by image and the whole-slide pipeline (1024 px tiles, 128 px
overlap: every image is cut by tile borders) in each decoding mode of `--modes`, and prints per
mode: object F1 at IoU >= 0.5, AJI, PQ and count error of the OME-Zarr level-0 labels against
the instance truth, cell by cell, next to the engine's own figures on the same images; true
nuclei claimed by two labels (an object counted twice where tiles meet); CPU seconds per tile
of the slide run (this process, workers 0), side by side for the modes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import object_scores  # noqa: E402

from wsi_sat import api  # noqa: E402
from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.image import read_image, read_labels  # noqa: E402
from wsi_sat.reference import Reference  # noqa: E402
from wsi_sat.synthetic import mosaic, write_pyramidal_tiff  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

MONUSEG = ROOT.parent / "shared" / "data" / "tiles" / "monuseg_nuclei"
MPP = 0.25
CELL = (1000, 1000)
GAP = 64


def twice_claimed(labels: np.ndarray, truth: np.ndarray, min_share: float = 0.25) -> int:
    """True objects of which two or more predicted labels each cover >= `min_share` (one
    nucleus counted twice)."""
    both = (labels > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([labels[both], truth[both]]), axis=1, return_counts=True)
    area_t = np.bincount(truth.ravel().astype(np.int64))
    big = inter >= min_share * area_t[pairs[1]]
    ids, counts = np.unique(pairs[1][big], return_counts=True)
    return int((counts >= 2).sum())


def scores(pred: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    rows = [object_scores(p, t) for p, t in zip(pred, truth)]
    out = {k: float(np.mean([r[k] for r in rows]))
           for k in ("object_f1", "aji", "pq", "count_error")}
    out["objects"] = int(sum(r["objects_pred"] for r in rows))
    out["truth"] = int(sum(r["objects_true"] for r in rows))
    out["twice"] = int(sum(twice_claimed(p, t) for p, t in zip(pred, truth)))
    return out


def load_set() -> tuple[tuple[str, np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    stems = sorted(p.stem for p in (MONUSEG / "instance_masks").iterdir())
    pairs = []
    for s in stems:
        img, _ = read_image(next((MONUSEG / "images").glob(s + ".*")))
        pairs.append((img, read_labels(MONUSEG / "instance_masks" / f"{s}.png")))
    return (stems[0], *pairs[0]), pairs[1:]


def run_mode(mode: str, slide: Path, pairs, cells, ref, args, tmp: Path) -> dict:
    cfg = load_config(None, ["wsi.tile_px=1024", "wsi.overlap_px=128",
                             f"sat.decode.mode={mode}", *args.set])
    seg = api.load_segmenter(cfg)
    stem, image, labels = ref
    reference = seg.prepare_reference([(image, labels)], [stem])
    engine = [seg.segment([img], reference, mpp=MPP)[0] for img, _ in pairs]
    engine_pred = [r.labels if r.labels is not None else r.mask for r in engine]
    slide_ref = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference(stem, image, labels > 0, "mask", labels)], reference_mpp=MPP,
        working_mpp=MPP))
    out = tmp / f"out_{mode}"
    cpu, wall = time.process_time(), time.perf_counter()
    summary = api.run_slide(slide, slide_ref, seg, cfg, out, mpp=MPP)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    zarr = read_level(out / f"{slide.stem}.ome.zarr", 0)
    run = json.loads((out / f"{slide.stem}.run.json").read_text())
    slide_pred = [zarr[y : y + h, x : x + w] for (y, x, h, w) in cells]
    if mode not in ("instances", "sam_instances"):
        slide_pred = [p > 0 for p in slide_pred]  # a region's objects: its connected pieces
    truth = [t[:h, :w] for (_, t), (_, _, h, w) in zip(pairs, cells)]
    return {"mode": run["calibration"]["mode"] if "calibration" in run else mode,
            "engine": scores([p[:h, :w] for p, (_, _, h, w) in zip(engine_pred, cells)], truth),
            "slide": scores(slide_pred, truth), "tiles": summary.tiles_segmented,
            "cpu_s_per_tile": cpu / max(1, summary.tiles_segmented),
            "wall_s": wall, "objects_run_json": run.get("objects")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="instances,map")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    if not (MONUSEG / "instance_masks").is_dir():
        sys.exit(f"needs {MONUSEG / 'instance_masks'}")
    ref, pairs = load_set()
    cols = 4
    slide_img, _ = mosaic([(i, t > 0) for i, t in pairs], cols=cols, cell_hw=CELL, gap_px=GAP)
    cells = []
    for i, (img, _) in enumerate(pairs):
        r, c = divmod(i, cols)
        y, x = GAP + r * (CELL[0] + GAP), GAP + c * (CELL[1] + GAP)
        cells.append((y, x, min(CELL[0], img.shape[0]), min(CELL[1], img.shape[1])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "monuseg_mosaic.tif"
        write_pyramidal_tiff(slide, slide_img, MPP, tile_px=256)
        for mode in args.modes.split(","):
            rows.append(run_mode(mode, slide, pairs, cells, ref, args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nMoNuSeg mosaic: {len(pairs)} images, {slide_img.shape[1]}x{slide_img.shape[0]} px "
          f"at {MPP} µm/px, reference {ref[0]} ({int(ref[2].max())} labelled nuclei)")
    print("| mode | where | object F1 | AJI | PQ | count error | objects / truth "
          "| truth counted twice | CPU s / tile |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for where in ("engine", "slide"):
            s = r[where]
            cpu = f"{r['cpu_s_per_tile']:.1f}" if where == "slide" else ""
            print(f"| {r['mode']} | {where} | {s['object_f1']:.3f} | {s['aji']:.3f} "
                  f"| {s['pq']:.3f} | {s['count_error']:.3f} | {s['objects']} / {s['truth']} "
                  f"| {s['twice']} | {cpu} |")


if __name__ == "__main__":
    main()
