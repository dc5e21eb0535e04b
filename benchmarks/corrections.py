"""A simulated pathologist steering wsi-sat with corrections, and what each rerun costs.

    .venv/bin/python benchmarks/corrections.py [--refs 0,1,2] [--rounds 2] [--no-peer]
        [--timing] [--timing-size 7168] [--set key=value] [--out bench_out/corrections]

The loop (on the sparse slide of benchmarks/sparse.py: the real skin section CMU-1 beside four
GlaS images on glass, 0.62 µm/px; none of the protocol's references is on it): for each of the
protocol's three GlaS references, round 0 is `wsi-sat run` with the reference alone; in each
further round the pathologist outlines, on the result, the true gland with the largest missed
area as `Gland` and the largest false positive as `Negative` (its outline with a band of
`--band-um` around every true gland cut out: a pathologist never marks a gland as negative),
adds them to a QuPath GeoJSON array (level-0 pixels) and reruns into the same `--out` with
`--reference-geojson` / `--reference-slide` added to the reference. Printed per round: Dice
against the GlaS masks on the un-annotated rest of the slide (pixels inside any outline given
are not scored), `fp_tissue_frac` (the fraction of the skin tissue, less the outlines, called
gland), the wall time of the run and the tiles it encoded / reused. The peer, in every round: a
QuPath/ilastik-style pixel classifier (a random forest on scikit-image's
`multiscale_basic_features`, at half the slide's resolution) trained on the same examples (the
reference image and its mask, the Gland and Negative outlines), applied within the tissue (as
inside a QuPath tissue annotation), scored the same way.

`--timing` builds a dense slide of GlaS images (`--timing-size` px a side, >= 50 tissue tiles)
and times a first run, a rerun with the same reference, and reruns with k = 1, 2, 4, 8 gland
annotations added (single glands of typical size, spread over the slide; the reference's
preparation time from the run's log line).
Overviews of every run are copied to `--out`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sparse as sp  # noqa: E402

from wsi_sat.geometry import Scale  # noqa: E402
from wsi_sat.raster import rasterise, resize_mask  # noqa: E402
from wsi_sat.stitch.polygons import tile_objects  # noqa: E402
from wsi_sat.writers.ome_zarr import read_level  # noqa: E402

MPP = sp.MPP


def outline(mask: np.ndarray) -> list[shapely.Polygon]:
    """A mask's outlines as level-0 polygons (the slide's level 0 is at the working mpp)."""
    objs = tile_objects(mask, None, mask.astype(np.float32), 0, (0, 0), Scale(MPP, MPP), 0.5)
    return [o.polygon for o in objs]


def feature(cls: str, poly: shapely.Polygon) -> dict:
    return {"type": "Feature", "properties": {"objectType": "annotation",
                                              "classification": {"name": cls}},
            "geometry": shapely.geometry.mapping(poly)}


def annotated_mask(annotations: list[tuple[str, shapely.Polygon]], shape: tuple[int, int]
                   ) -> np.ndarray:
    return rasterise([p for _, p in annotations], shape)


def score(pred: np.ndarray, sparse: dict, annotated: np.ndarray) -> dict[str, float]:
    rest = ~annotated
    truth = sparse["truth"] & rest
    p = pred & rest
    tissue = sparse["skin_tissue"] & rest
    return {"dice": 2 * float((p & truth).sum()) / max(1, int(p.sum() + truth.sum())),
            "recall": float((p & truth).sum()) / max(1, int(truth.sum())),
            "fp_tissue_frac": float((p & tissue).sum()) / max(1, int(tissue.sum()))}


def next_corrections(pred: np.ndarray, sparse: dict, annotated: np.ndarray, band_px: int
                     ) -> list[tuple[str, shapely.Polygon]]:
    """The most-missed true gland (whole) and the largest false positive (less a band around
    every gland), as a pathologist outlines them on the result."""
    out: list[tuple[str, shapely.Polygon]] = []
    glands, n = ndimage.label(sparse["truth"])
    missed = np.bincount(glands[sparse["truth"] & ~pred & ~annotated], minlength=n + 1)
    missed[0] = 0
    if missed.max() > 0:
        out += [("Gland", p) for p in outline(glands == int(np.argmax(missed)))]
    near_gland = ndimage.binary_dilation(sparse["truth"], iterations=band_px)
    fp, m = ndimage.label(pred & ~near_gland & ~annotated)
    if m:
        sizes = np.bincount(fp.ravel(), minlength=m + 1)
        sizes[0] = 0
        if sizes.max() >= 200:  # ~80 µm²: a pathologist outlines what can be seen
            out += [("Negative", p) for p in outline(fp == int(np.argmax(sizes)))]
    return out


def wsi_sat(slide: Path, ref: tuple[Path, Path], geojson: Path | None, out: Path,
            extra: list[str]) -> tuple[float, float, dict]:
    """Run wsi-sat; returns wall seconds, the reference's preparation seconds and run.json."""
    cmd = [sys.executable, "-m", "wsi_sat.cli", "run", str(slide), "--reference", str(ref[0]),
           "--reference-mask", str(ref[1]), "--reference-mpp", str(MPP), "--out", str(out),
           "--class-name", "Gland", *extra]
    if geojson is not None:
        cmd += ["--reference-geojson", str(geojson), "--reference-slide", str(slide)]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"wsi-sat run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    found = re.search(r"reference \w+(?: from \S+)? in ([0-9.]+)s", done.stderr)
    stem = slide.name.split(".")[0]
    return wall, float(found.group(1)) if found else float("nan"), json.loads(
        (out / f"{stem}.run.json").read_text())


class PixelClassifier:
    """QuPath / ilastik-style: a random forest on multiscale intensity, edge and texture
    features, at half the slide's resolution."""

    def __init__(self, image: np.ndarray, seed: int = 0) -> None:
        self.shape = image.shape[:2]
        self.feats = self._features(image)
        self.seed = seed

    @staticmethod
    def _features(image: np.ndarray) -> np.ndarray:
        from PIL import Image
        from skimage.feature import multiscale_basic_features

        h, w = image.shape[:2]
        small = np.asarray(Image.fromarray(image).resize((w // 2, h // 2),
                                                         Image.Resampling.BILINEAR))
        return multiscale_basic_features(small, channel_axis=-1, sigma_min=1, sigma_max=8,
                                         num_sigma=4).astype(np.float32)

    def predict(self, examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """Trained on (features, fg mask, labelled mask) triples at half resolution; the
        slide's mask at full resolution."""
        from sklearn.ensemble import RandomForestClassifier

        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for feats, fg, known in examples:
            for cls, where in ((1, fg & known), (0, ~fg & known)):
                idx = np.flatnonzero(where)
                idx = rng.choice(idx, min(len(idx), 20000), replace=False) if len(idx) else idx
                xs.append(feats.reshape(-1, feats.shape[-1])[idx])
                ys.append(np.full(len(idx), cls))
        forest = RandomForestClassifier(n_estimators=100, max_depth=20, n_jobs=2,
                                        random_state=self.seed)
        forest.fit(np.concatenate(xs), np.concatenate(ys))
        flat = self.feats.reshape(-1, self.feats.shape[-1])
        prob = np.concatenate([forest.predict_proba(flat[i:i + 200000])[:, 1]
                               for i in range(0, len(flat), 200000)])
        small = prob.reshape(self.feats.shape[:2]) > 0.5
        return resize_mask(small, (self.shape[1], self.shape[0]))


def half(mask: np.ndarray) -> np.ndarray:
    return resize_mask(mask, (mask.shape[1] // 2, mask.shape[0] // 2))


def loop(args: argparse.Namespace, tmp: Path, extra: list[str]) -> list[dict]:
    sparse = sp.build_sparse(tmp)
    shape = sparse["shape"]
    slide_img = None
    peer = None
    if args.peer:
        import tiffslide

        with tiffslide.TiffSlide(sparse["path"]) as s:
            slide_img = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))
        peer = PixelClassifier(slide_img)
    band_px = max(1, round(args.band_um / MPP))
    rows = []
    for r in [int(x) for x in args.refs.split(",") if x]:
        stem = sp.protocol_refs()[f"ref{r}"]
        ref = sp.write_reference(tmp, stem)
        ref_examples = None
        if peer is not None:
            img, m = sp.glas_pair(stem)
            ref_examples = (PixelClassifier._features(img), half(m), np.ones_like(half(m)))
        out, annotations, geojson = tmp / f"ref{r}", [], None
        for rnd in range(args.rounds + 1):
            wall, ref_s, run = wsi_sat(sparse["path"], ref, geojson, out, extra)
            pred = read_level(out / "sparse.ome.zarr", 0) > 0
            annotated = annotated_mask(annotations, shape)
            row = {"ref": f"ref{r} ({stem})", "round": rnd, "annotations": len(annotations),
                   **score(pred, sparse, annotated), "seconds": wall, "reference_s": ref_s,
                   "encoded": run["tiles"].get("encoded"), "reused": run["tiles"].get("reused"),
                   "threshold": run["calibration"]["threshold"],
                   "novel_fraction": run.get("open_set", {}).get("background", {}).get(
                       "novel_fraction"),
                   "decision": run.get("open_set", {}).get("decision"),
                   "warnings": run.get("warnings", [])}
            if peer is not None:
                examples = [ref_examples]
                if annotations:
                    fg = rasterise([p for c, p in annotations if c == "Gland"], shape)
                    examples.append((peer.feats, half(fg), half(annotated)))
                # within the tissue, as a QuPath user classifies inside a tissue annotation
                peer_pred = peer.predict(examples) & (sparse["skin_tissue"] |
                                                      sparse["glas_region"])
                row.update({f"peer_{k}": v for k, v in
                            score(peer_pred, sparse, annotated).items()})
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.copy(out / "sparse.overview.png", args.out / f"ref{r}_round{rnd}.png")
            if rnd == args.rounds:
                break
            annotations += next_corrections(pred, sparse, annotated, band_px)
            geojson = tmp / f"ref{r}_corrections.geojson"
            geojson.write_text(json.dumps([feature(c, p) for c, p in annotations]))
    return rows


def timing(args: argparse.Namespace, tmp: Path, extra: list[str]) -> list[dict]:
    """First run, rerun, reruns with k annotations on a dense slide of >= 50 tissue tiles."""
    import throughput as tp

    pairs, _ = tp.glas_images()
    layout = tp.dense_layout(args.timing_size, pairs)
    path = tmp / "dense.tif"
    tp.write_layout_tiff(path, (args.timing_size, args.timing_size),
                         [(x, y, img) for x, y, img, _ in layout], MPP)
    # single glands of typical size, spread over the slide (each image's glands apart: glands
    # of neighbouring images touch in the mosaic)
    glands = np.zeros((args.timing_size, args.timing_size), np.int32)
    for x, y, _, m in layout:
        lab, n = ndimage.label(m)
        glands[y: y + m.shape[0], x: x + m.shape[1]] = np.where(lab > 0, lab + glands.max(), 0)
    sizes = np.bincount(glands.ravel())
    sizes[0] = 0
    typical = np.nonzero((sizes > np.percentile(sizes[sizes > 0], 40)) &
                         (sizes < np.percentile(sizes[sizes > 0], 60)))[0]
    order = typical[np.linspace(0, len(typical) - 1, 8).round().astype(int)]
    ref = sp.write_reference(tmp, sp.protocol_refs()["ref0"])
    out, rows = tmp / "timing", []
    runs = [("first run", 0), ("rerun, same reference", 0)] + \
        [(f"rerun, {k} annotations", k) for k in (1, 2, 4, 8)]
    for label, k in runs:
        geojson = None
        if k:
            geojson = tmp / f"k{k}.geojson"
            polys = [p for g in order[:k] for p in outline(glands == g)]
            geojson.write_text(json.dumps([feature("Gland", p) for p in polys]))
        wall, ref_s, run = wsi_sat(path, ref, geojson, out, extra)
        row = {"run": label, "seconds": wall, "reference_s": ref_s,
               "tiles": run["tiles"]["segmented"], "encoded": run["tiles"].get("encoded"),
               "reused": run["tiles"].get("reused"),
               "views": run["reference"].get("views")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = rows[0]["seconds"]
    for row in rows:
        row["of_first"] = row["seconds"] / first
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs", default="0,1,2", help="protocol references ('' for none)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--band-um", type=float, default=10.0,
                        help="band around every true gland cut out of a negative outline")
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--timing-size", type=int, default=7168)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "corrections")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the slides and runs here (reruns reuse their encodings)")
    args = parser.parse_args()
    if not (sp.GLAS.is_dir() and sp.SKIN.is_file()):
        sys.exit(f"needs {sp.GLAS} and {sp.SKIN} (../shared beside the checkout)")
    extra = [a for s in args.set for a in ("--set", s)]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(args.workdir or tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        rows = loop(args, tmp, extra) if args.refs else []
        times = timing(args, tmp, extra) if args.timing else []
    (args.out / "corrections.json").write_text(json.dumps({"loop": rows, "timing": times},
                                                          indent=1))
    if rows:
        print("\n| reference | round | outlines | Dice (rest) | recall | fp_tissue_frac | "
              "peer Dice | peer fp | s | encoded / reused |\n|---|---|---|---|---|---|---|---|"
              "---|---|")
        for r in rows:
            print(f"| {r['ref']} | {r['round']} | {r['annotations']} | {r['dice']:.3f} | "
                  f"{r['recall']:.3f} | {r['fp_tissue_frac']:.3f} | "
                  f"{r.get('peer_dice', float('nan')):.3f} | "
                  f"{r.get('peer_fp_tissue_frac', float('nan')):.3f} | {r['seconds']:.0f} | "
                  f"{r['encoded']} / {r['reused']} |")
    if times:
        print("\n| run | s | of the first | reference s | tiles | encoded / reused |\n"
              "|---|---|---|---|---|---|")
        for r in times:
            print(f"| {r['run']} | {r['seconds']:.1f} | {r['of_first']:.2f} | "
                  f"{r['reference_s']:.1f} | {r['tiles']} | {r['encoded']} / {r['reused']} |")


if __name__ == "__main__":
    main()
