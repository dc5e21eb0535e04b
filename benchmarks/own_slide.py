"""Leave-annotation-out on the reference's own slide: is the rest of the annotated tissue found?

    .venv/bin/python benchmarks/own_slide.py [--set key=value] [--out bench_out/own_slide]

The real skin section `../shared/data/slides/CMU-1-Small-Region.svs` (0.499 µm/px) holds
epidermis (stratified squamous epithelium) in several places. The annotations are derived from
the slide itself, reproducibly (no hand drawing): at ~2 µm/px, the haematoxylin density of
scikit-image's colour deconvolution smoothed over ~12 µm, where it exceeds 0.04 and 1.6 x the
eosin density (nuclei-dense, cytoplasm-poor epithelium against collagen), opened and closed,
holes filled, pieces above ~0.012 mm² kept; the largest piece (the central epidermis) is cut in
two across its middle. Each piece is one QuPath annotation of class `Epidermis` (the overlay of
them is written to `--out`: look at it). Each annotation in turn is the reference
(`--reference-geojson` on the same slide), and the others are the truth: printed per reference,
the fraction of the held-out annotations' area found, and the predicted area outside every
annotation (grown by 25 µm) as a fraction of the tissue outside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.geometry import Scale  # noqa: E402
from wsi_sat.raster import rasterise, resize_mask  # noqa: E402
from wsi_sat.stitch.polygons import tile_objects  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

SLIDE = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
DOWN = 4  # annotations derived at 1/4 of level 0 (~2 µm/px)


def epidermis_pieces(image: np.ndarray) -> list[np.ndarray]:
    """The slide's epithelium as masks at 1/DOWN resolution (see the module docstring)."""
    from skimage.color import rgb2hed

    small = np.asarray(Image.fromarray(image).resize(
        (image.shape[1] // DOWN, image.shape[0] // DOWN), Image.Resampling.BILINEAR))
    hed = rgb2hed(small)
    h, e = (ndimage.gaussian_filter(hed[..., c], 6) for c in (0, 1))
    tissue = ndimage.binary_erosion(small.mean(-1) < 215, iterations=2)
    m = (h > 0.04) & (h / (e + 1e-3) > 1.6) & tissue
    m = ndimage.binary_fill_holes(ndimage.binary_closing(ndimage.binary_opening(
        m, iterations=4), iterations=4))
    lab, _ = ndimage.label(m)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    pieces = [lab == k for k in np.argsort(sizes)[::-1] if sizes[k] > 3000]
    big = pieces[0]
    rows = np.nonzero(big.any(axis=1))[0]
    cut = int(np.median(np.nonzero(big)[0]))  # across its middle, with a 40 µm gap
    upper, lower = big.copy(), big.copy()
    upper[cut - 5:] = False
    lower[: cut + 5] = False
    assert rows.size
    return [upper, lower, *pieces[1:]]


def outline_level0(mask: np.ndarray, mpp: float) -> list:
    objs = tile_objects(mask, None, mask.astype(np.float32), 0, (0, 0),
                        Scale(mpp, mpp * DOWN), 0.5)
    return [o.polygon for o in objs]


def feature(poly) -> dict:
    import shapely

    return {"type": "Feature", "properties": {"objectType": "annotation",
                                              "classification": {"name": "Epidermis"}},
            "geometry": shapely.geometry.mapping(poly)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "own_slide")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if not SLIDE.is_file():
        sys.exit(f"needs {SLIDE} (../shared beside the checkout)")
    import tiffslide

    with tiffslide.TiffSlide(SLIDE) as s:
        image = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))
        mpp = float(s.properties["tiffslide.mpp-x"])
    pieces = epidermis_pieces(image)
    polys = [outline_level0(p, mpp) for p in pieces]
    shape = image.shape[:2]
    full = [rasterise(p, shape) for p in polys]
    args.out.mkdir(parents=True, exist_ok=True)
    h, w = pieces[0].shape
    overlay = image[: h * DOWN : DOWN, : w * DOWN : DOWN].copy()
    for i, p in enumerate(pieces):
        colour = np.array([(0, 160, 60), (200, 120, 0), (0, 80, 200), (180, 0, 180)][i % 4])
        overlay[p] = (0.5 * overlay[p] + 0.5 * colour).astype(np.uint8)
    Image.fromarray(overlay).save(args.out / "annotations.png")
    tissue = resize_mask(image[::DOWN, ::DOWN].mean(-1) < 215, (shape[1], shape[0]))
    any_ann = np.any(full, axis=0)
    near = ndimage.binary_dilation(any_ann, iterations=round(25 / mpp))
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(args.workdir or tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        for i, ref in enumerate(polys):
            geo = tmp / f"ann{i}.geojson"
            geo.write_text(json.dumps([feature(p) for p in ref]))
            out = tmp / "out"
            cmd = [sys.executable, "-m", "wsi_sat.cli", "-q", "run", str(SLIDE),
                   "--reference-geojson", str(geo), "--reference-slide", str(SLIDE),
                   "--out", str(out), *[a for s in args.set for a in ("--set", s)]]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"wsi-sat run failed: {done.stderr[-2000:]}")
            level = read_level(out / "CMU-1-Small-Region.ome.zarr", 0) > 0
            pred = resize_mask(level, (shape[1], shape[0]))
            held = np.any([f for j, f in enumerate(full) if j != i], axis=0)
            outside = tissue & ~near
            row = {"reference": i, "reference_area_mm2": float(full[i].sum() * mpp**2 / 1e6),
                   "held_out_found": float((pred & held).sum() / max(1, held.sum())),
                   "per_annotation_found": [round(float((pred & f).sum() / f.sum()), 3)
                                            for j, f in enumerate(full) if j != i],
                   "outside_frac": float((pred & outside).sum() / max(1, outside.sum()))}
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.copy(out / "CMU-1-Small-Region.overview.png", args.out / f"ref{i}.png")
    (args.out / "own_slide.json").write_text(json.dumps(rows, indent=1))
    print("\n| reference annotation | mm² | held-out area found | per annotation | predicted "
          "outside the annotations (of that tissue) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['reference']} | {r['reference_area_mm2']:.3f} | {r['held_out_found']:.3f} | "
              f"{r['per_annotation_found']} | {r['outside_frac']:.3f} |")
    print(f"mean held-out area found: {np.mean([r['held_out_found'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
