"""Accuracy benchmark: the protocol of ../shared/data/README.md on every dataset in
../shared/data/tiles, with three trivial calibrations measured in the same process.

    .venv/bin/python benchmarks/accuracy.py [--datasets a,b] [--refs 0,1,2] [--set key=value]

Protocol (fixed, so numbers stay comparable): sort stems; reference = first stem (ref0), and two
more references at positions len//3 (ref1) and 2*len//3 (ref2); targets = up to 40 of the other
stems at evenly spaced positions (numpy.linspace over the sorted rest); Dice and IoU per target at
the original resolution. Prints mean / median Dice and IoU for ref0, mean Dice per reference and
its spread (max - min), seconds per target, the trivial calibrations (reference mask copied onto
the target, a per-pixel RGB Gaussian classifier fitted on the reference, everything foreground),
and the cost split (encoder vs the rest). Writes bench_out/accuracy.json and overlays of the three
worst ref0 targets per dataset to bench_out/overlays/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.raster import resize_mask  # noqa: E402
from wsi_sat.sat.metrics import dice, iou  # noqa: E402
from wsi_sat.segmenter import Segmenter  # noqa: E402

TILES = ROOT.parent / "shared" / "data" / "tiles"


def protocol(dataset: Path, max_targets: int = 40) -> dict[str, tuple[str, list[str]]]:
    stems = sorted(p.stem for p in (dataset / "images").iterdir())
    n = len(stems)
    out = {}
    for name, pos in (("ref0", 0), ("ref1", n // 3), ("ref2", 2 * n // 3)):
        ref = stems[pos]
        rest = [s for s in stems if s != ref]
        idx = np.unique(np.linspace(0, len(rest) - 1, min(max_targets, len(rest))).round())
        out[name] = (ref, [rest[int(i)] for i in idx])
    return out


def load_pair(dataset: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    image_path = next((dataset / "images").glob(stem + ".*"))
    image, _ = read_image(image_path)
    return image, read_mask(dataset / "masks" / f"{stem}.png")


def trivial_scores(ref: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray]
                   ) -> dict[str, float]:
    """copy the reference mask, RGB Gaussian classifier fitted on the reference, all fg."""
    ref_img, ref_mask = ref
    img, truth = target
    copied = resize_mask(ref_mask, (truth.shape[1], truth.shape[0]))
    x = ref_img.reshape(-1, 3).astype(np.float64)
    y = ref_mask.ravel()
    q = img.reshape(-1, 3).astype(np.float64)
    logp = []
    for cls in (False, True):
        xs = x[y == cls]
        mu, cov = xs.mean(0), np.cov(xs.T) + np.eye(3) * 1e-3
        inv = np.linalg.inv(cov)
        d = q - mu
        logp.append(-0.5 * np.einsum("ij,jk,ik->i", d, inv, d) - 0.5 * np.linalg.slogdet(cov)[1]
                    + np.log(len(xs) / len(x)))
    gauss = (logp[1] > logp[0]).reshape(truth.shape)
    return {"copy_ref_mask": dice(copied, truth), "colour_gaussian": dice(gauss, truth),
            "all_foreground": dice(np.ones_like(truth), truth)}


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Green: true positive, red: false positive, blue: false negative."""
    out = image.astype(np.float32) * 0.6
    out[pred & truth] += np.array([0, 100, 0])
    out[pred & ~truth] += np.array([100, 0, 0])
    out[~pred & truth] += np.array([0, 0, 100])
    return np.clip(out, 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> dict:
    cfg = load_config(None, args.set)
    seg = Segmenter.from_config(cfg)
    datasets = args.datasets.split(",") if args.datasets else sorted(
        p.name for p in TILES.iterdir() if p.is_dir())
    out_dir = Path(args.out)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    report: dict = {"config_overrides": list(args.set), "datasets": {}}
    for ds_name in datasets:
        ds = TILES / ds_name
        prot = protocol(ds, args.max_targets)
        ds_report: dict = {}
        for ref_name in args.refs.split(","):
            ref_name = f"ref{ref_name}"
            ref_stem, targets = prot[ref_name]
            ref_pair = load_pair(ds, ref_stem)
            t0 = time.perf_counter()
            reference = seg.prepare_reference([ref_pair], [ref_stem])
            t_ref = time.perf_counter() - t0
            rows = []
            for stem in targets:
                img, truth = load_pair(ds, stem)
                t = time.perf_counter()
                res = seg.segment([img], reference)[0]
                sec = time.perf_counter() - t
                row = {"stem": stem, "dice": dice(res.mask, truth), "iou": iou(res.mask, truth),
                       "seconds": sec, "encode_s": res.timings_s.get("encode", 0.0),
                       "pixels": int(truth.size)}
                if ref_name == "ref0":
                    row.update(trivial_scores(ref_pair, (img, truth)))
                    if args.overlays:
                        row["_overlay"] = overlay(img, res.mask, truth)
                rows.append(row)
            worst = sorted(rows, key=lambda r: r["dice"])[:3]
            for r in worst:
                if "_overlay" in r:
                    Image.fromarray(r["_overlay"]).save(
                        out_dir / "overlays" / f"{ds_name}__{r['stem']}__dice{r['dice']:.2f}.png")
            for r in rows:
                r.pop("_overlay", None)
            cal = reference.calibration
            ds_report[ref_name] = {
                "reference": ref_stem, "reference_s": t_ref, "mode": cal.mode,
                "threshold": cal.threshold, "pixel_model": cal.use_pixel,
                "calibration_scores": cal.scores, "targets": rows,
            }
            d = [r["dice"] for r in rows]
            print(f"{ds_name} {ref_name} ({ref_stem}): mean Dice {np.mean(d):.3f} median "
                  f"{np.median(d):.3f}  mode={cal.mode} thr={cal.threshold:+.2f} "
                  f"pixel={cal.use_pixel}  ref {t_ref:.0f}s  "
                  f"{np.median([r['seconds'] for r in rows]):.2f}s/img", flush=True)
        report["datasets"][ds_name] = ds_report
        (out_dir / "accuracy.json").write_text(json.dumps(report, indent=1))
    return report


def table(report: dict) -> str:
    lines = [
        "| dataset | mean Dice | median Dice | mean IoU | median IoU | Dice ref0/ref1/ref2 | "
        "spread | s/img | copy ref mask | colour Gaussian | all fg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    enc, total = [], []
    for ds, refs in report["datasets"].items():
        r0 = refs.get("ref0")
        if r0 is None:
            continue
        rows = r0["targets"]
        d = np.array([r["dice"] for r in rows])
        j = np.array([r["iou"] for r in rows])
        per_ref = [np.mean([r["dice"] for r in refs[k]["targets"]]) for k in sorted(refs)]
        triv = {k: np.mean([r[k] for r in rows]) for k in
                ("copy_ref_mask", "colour_gaussian", "all_foreground")}
        secs = np.median([r["seconds"] for r in rows])
        for k in refs:
            enc += [r["encode_s"] for r in refs[k]["targets"]]
            total += [r["seconds"] for r in refs[k]["targets"]]
        lines.append(
            f"| {ds} | {d.mean():.3f} | {np.median(d):.3f} | {j.mean():.3f} | "
            f"{np.median(j):.3f} | {'/'.join(f'{v:.2f}' for v in per_ref)} | "
            f"{max(per_ref) - min(per_ref):.2f} | {secs:.2f} | {triv['copy_ref_mask']:.3f} | "
            f"{triv['colour_gaussian']:.3f} | {triv['all_foreground']:.3f} |"
        )
    if total:
        share = 1.0 - float(np.sum(enc)) / float(np.sum(total))
        lines.append(f"\nshare of per-target time outside the image encoder: {100 * share:.0f} %")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="", help="comma-separated (default: all)")
    parser.add_argument("--refs", default="0,1,2", help="which references (0,1,2)")
    parser.add_argument("--max-targets", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "bench_out"))
    parser.add_argument("--no-overlays", dest="overlays", action="store_false")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--table-from", nargs="+", default=None, metavar="JSON",
                        help="only print the table from accuracy.json files (merged)")
    args = parser.parse_args()
    if args.table_from:
        merged: dict = {"datasets": {}}
        for path in args.table_from:
            for ds, refs in json.loads(Path(path).read_text())["datasets"].items():
                merged["datasets"].setdefault(ds, {}).update(refs)
        print(table(merged))
        return
    if not TILES.is_dir():
        sys.exit(f"benchmark data not found at {TILES} (needs ../shared beside the checkout)")
    report = run(args)
    print(table(report))


if __name__ == "__main__":
    main()
