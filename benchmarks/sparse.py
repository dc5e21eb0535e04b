"""Precision on real target-free tissue: a sparse slide and a frozen section through `wsi-sat run`.

    .venv/bin/python benchmarks/sparse.py [--refs 0,1,2] [--pooled] [--no-negative]
        [--no-frozen] [--coarse 4] [--set key=value] [--out bench_out/sparse]

The sparse slide (built in a temporary folder, never committed): the real skin section
`../shared/data/slides/CMU-1-Small-Region.svs` (0.499 µm/px, resampled to 0.62) beside four GlaS
images on glass (0.62 µm/px; truth = their gland masks), written as a pyramidal TIFF. The skin
holds no gland, so every pixel predicted on it is a false positive.

For each of the protocol's three GlaS references (ref0 = first sorted stem, ref1 / ref2 at len//3
and 2*len//3; none of them is on the slide) it runs `wsi-sat run slide.tif --reference ...
--reference-mpp 0.62` in a fresh process and prints, from the OME-Zarr level 0: Dice, precision
and recall against the GlaS masks over the whole slide, `fp_tissue_frac` (the fraction of the
skin tissue predicted as target) and `glass_frac` (predicted pixels on the glass around the
skin, as a fraction of the skin tissue: the halo). Then the same with one negative region
(`--negative`: a 640 x 640 level-0 px crop of the skin section, dermis and epidermis) — that
region is left out of `fp_tissue_frac`. Then the frozen section
`TCGA-CR-7395-01A-01-TS1.svs` (target-free; it has no pixel size: `--slide-mpp 1.0`, measured
from its lymphocyte nuclei, 5-7 px across) and its predicted fraction of tissue. With `--coarse
N` the sparse slide is also run with coarse-to-fine at N and the tiles it segments are printed.
With `--pooled` the three references are also run together (`--reference` three times: k = 3).
Overview PNGs of every run are copied to `--out`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tiffslide
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.config import WsiConfig  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.raster import resize_mask  # noqa: E402
from wsi_sat.synthetic import write_pyramidal_tiff  # noqa: E402
from wsi_sat.tiling.tissue import tissue_mask  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
GLAS = SHARED / "tiles" / "glas_colon_glands"
SKIN = SHARED / "slides" / "CMU-1-Small-Region.svs"
FROZEN = SHARED / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
FROZEN_MPP = 1.0
MPP = 0.62
GAP = 96
NEGATIVE_BOX_LEVEL0 = (580, 2260, 1220, 2900)  # x0, y0, x1, y1 in CMU-1 level-0 px
N_GLAS = 4


def protocol_refs() -> dict[str, str]:
    stems = sorted(p.stem for p in (GLAS / "images").iterdir())
    n = len(stems)
    return {"ref0": stems[0], "ref1": stems[n // 3], "ref2": stems[2 * n // 3]}


def glas_pair(stem: str) -> tuple[np.ndarray, np.ndarray]:
    return (read_image(next((GLAS / "images").glob(stem + ".*")))[0],
            read_mask(GLAS / "masks" / f"{stem}.png"))


def build_sparse(tmp: Path) -> dict:
    """The slide, its truth, the skin tissue mask, the skin region and the negative crop."""
    with tiffslide.TiffSlide(SKIN) as s:
        skin0 = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))
        skin_mpp = float(s.properties["tiffslide.mpp-x"])
    f = skin_mpp / MPP
    h, w = round(skin0.shape[0] * f), round(skin0.shape[1] * f)
    skin = np.asarray(Image.fromarray(skin0).resize((w, h), Image.Resampling.LANCZOS))
    border = np.concatenate([skin[0], skin[-1], skin[:, 0], skin[:, -1]])
    glass = np.median(border, axis=0).astype(np.uint8)
    refs = set(protocol_refs().values())
    pool = [s for s in sorted(p.stem for p in (GLAS / "images").iterdir()) if s not in refs]
    chosen = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, N_GLAS).round()]
    pairs = [glas_pair(s) for s in chosen]
    col_w = max(p[0].shape[1] for p in pairs)
    height = max(h, sum(p[0].shape[0] + GAP for p in pairs)) + 2 * GAP
    width = GAP + w + GAP + col_w + GAP
    image = np.empty((height, width, 3), np.uint8)
    image[:] = glass
    truth = np.zeros((height, width), bool)
    image[GAP : GAP + h, GAP : GAP + w] = skin
    skin_region = np.zeros((height, width), bool)
    skin_region[GAP : GAP + h, GAP : GAP + w] = True
    y = GAP
    glas_region = np.zeros((height, width), bool)
    for img, m in pairs:
        x = 2 * GAP + w
        image[y : y + img.shape[0], x : x + img.shape[1]] = img
        glas_region[y : y + img.shape[0], x : x + img.shape[1]] = True
        truth[y : y + m.shape[0], x : x + m.shape[1]] = m
        y += img.shape[0] + GAP
    skin_tissue = np.zeros_like(skin_region)
    # tissue: holes up to a gland lumen filled (20000 µm²); the large glass holes of the skin
    # section count as glass, where a prediction is a halo
    skin_tissue[GAP : GAP + h, GAP : GAP + w] = tissue_mask(skin, WsiConfig(), min_area_px=64,
                                                            max_hole_px=20000 / MPP**2)
    x0, y0, x1, y1 = (round(v * f) for v in NEGATIVE_BOX_LEVEL0)
    negative = np.zeros_like(skin_region)
    negative[GAP + y0 : GAP + y1, GAP + x0 : GAP + x1] = True
    Image.fromarray(skin[y0:y1, x0:x1]).save(tmp / "negative.png")
    path = tmp / "sparse.tif"
    write_pyramidal_tiff(path, image, MPP, tile_px=256)
    return {"path": path, "truth": truth, "skin_tissue": skin_tissue, "skin_region": skin_region,
            "glas_region": glas_region,
            "negative": negative, "glas": chosen, "shape": image.shape[:2]}


def write_reference(tmp: Path, stem: str) -> tuple[Path, Path]:
    img, m = glas_pair(stem)
    Image.fromarray(img).save(tmp / f"{stem}.png")
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp / f"{stem}_mask.png")
    return tmp / f"{stem}.png", tmp / f"{stem}_mask.png"


def wsi_sat_run(slide: Path, refs: list[tuple[Path, Path]], out: Path,
                extra: list[str]) -> float:
    ref_flags = [a for image, mask in refs
                 for a in ("--reference", str(image), "--reference-mask", str(mask))]
    cmd = [sys.executable, "-m", "wsi_sat.cli", "-q", "run", str(slide), *ref_flags,
           "--reference-mpp", str(MPP), "--out", str(out), *extra]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"wsi-sat run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - t


def scores(pred: np.ndarray, sparse: dict, negative: bool) -> dict[str, float]:
    truth = sparse["truth"]
    tp = int((pred & truth).sum())
    p, t = int(pred.sum()), int(truth.sum())
    tissue = sparse["skin_tissue"] & ~(sparse["negative"] if negative else False)
    glass = sparse["skin_region"] & ~sparse["skin_tissue"]
    cells = sparse["glas_region"]
    dice_glas = 2 * tp / max(1, int((pred & cells).sum()) + t)
    return {"dice": 2 * tp / max(1, p + t), "precision": tp / max(1, p), "recall": tp / max(1, t),
            "dice_glas": dice_glas,
            "fp_tissue_frac": float((pred & tissue).sum() / max(1, tissue.sum())),
            "glass_frac": float((pred & glass).sum() / max(1, sparse["skin_tissue"].sum()))}


def frozen_fraction(out: Path) -> float:
    """Predicted fraction of the frozen section's tissue (at the store's level 1)."""
    stem = FROZEN.name.split(".")[0]
    pred = read_level(out / f"{stem}.ome.zarr", 1) > 0
    with tiffslide.TiffSlide(FROZEN) as s:
        thumb = np.asarray(s.get_thumbnail((pred.shape[1], pred.shape[0])).convert("RGB"))
    tissue = resize_mask(tissue_mask(thumb, WsiConfig(), min_area_px=64), (pred.shape[1], pred.shape[0]))
    return float((pred & tissue).sum() / max(1, tissue.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs", default="0,1,2", help="protocol references, one run each "
                        "('' for none)")
    parser.add_argument("--pooled", action="store_true",
                        help="also the three references pooled in one run")
    parser.add_argument("--no-negative", dest="negative", action="store_false")
    parser.add_argument("--no-frozen", dest="frozen", action="store_false")
    parser.add_argument("--coarse", type=int, default=0)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "sparse")
    args = parser.parse_args()
    if not (GLAS.is_dir() and SKIN.is_file()):
        sys.exit(f"needs {GLAS} and {SKIN} (../shared beside the checkout)")
    extra = [a for s in args.set for a in ("--set", s)]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sparse = build_sparse(tmp)
        print(f"sparse slide: {sparse['shape'][1]}x{sparse['shape'][0]} px at {MPP} µm/px, "
              f"skin tissue {sparse['skin_tissue'].sum() * MPP**2 / 1e6:.2f} mm², GlaS "
              f"{', '.join(sparse['glas'])}", flush=True)
        runs = [("sparse", False, [])]
        if args.negative:
            runs.append(("sparse + negative", True, ["--negative", str(tmp / "negative.png")]))
        if args.coarse > 1:
            runs.append((f"sparse, coarse {args.coarse}", False,
                         ["--set", f"wsi.coarse_downsample={args.coarse}"]))
        sets = [(f"ref{r}", [protocol_refs()[f"ref{r}"]]) for r in args.refs.split(",") if r]
        if args.pooled:  # the three references in one run (k = 3, pooled)
            sets.append(("pooled", list(protocol_refs().values())))
        for key, stems in sets:
            stem = "+".join(stems)
            ref = [write_reference(tmp, s) for s in stems]
            for label, negative, flags in runs:
                out = tmp / f"{key}_{len(rows)}"
                sec = wsi_sat_run(sparse["path"], ref, out, flags + extra)
                pred = read_level(out / "sparse.ome.zarr", 0) > 0
                run = json.loads((out / "sparse.run.json").read_text())
                row = {"run": label, "ref": f"{key} ({stem})", "seconds": sec,
                       "tiles": run["tiles"]["segmented"], **scores(pred, sparse, negative),
                       "threshold": run["calibration"]["threshold"],
                       "open_set": run.get("open_set", {})}
                shutil.copy(out / "sparse.overview.png",
                            args.out / f"{key}_{label.replace(' ', '_').replace(',', '')}.png")
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.frozen:
                out = tmp / f"{key}_frozen"
                sec = wsi_sat_run(FROZEN, ref, out, ["--slide-mpp", str(FROZEN_MPP)] + extra)
                run = json.loads((out / f"{FROZEN.name.split('.')[0]}.run.json").read_text())
                row = {"run": "frozen", "ref": f"{key} ({stem})", "seconds": sec,
                       "tiles": run["tiles"]["segmented"], "fp_tissue_frac": frozen_fraction(out)}
                shutil.copy(out / f"{FROZEN.name.split('.')[0]}.overview.png",
                            args.out / f"{key}_frozen.png")
                rows.append(row)
                print(json.dumps(row), flush=True)
    (args.out / "sparse.json").write_text(json.dumps(rows, indent=1))
    print("\n| run | reference | Dice | precision | recall | Dice in the GlaS images | "
          "fp_tissue_frac | glass_frac | tiles | s |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cell = (lambda k: f"{r[k]:.3f}" if k in r else "–")
        print(f"| {r['run']} | {r['ref']} | {cell('dice')} | {cell('precision')} | "
              f"{cell('recall')} | {cell('dice_glas')} | {cell('fp_tissue_frac')} | "
              f"{cell('glass_frac')} | "
              f"{r['tiles']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
