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
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsi_sat.config import load_config  # noqa: E402
from wsi_sat.io.image import read_image, read_mask  # noqa: E402
from wsi_sat.raster import resize_mask  # noqa: E402
from wsi_sat.sat.metrics import dice, iou, match_objects  # noqa: E402
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


def object_scores(pred: np.ndarray, truth_labels: np.ndarray, min_iou: float = 0.5
                  ) -> dict[str, float]:
    """Objects counted, not only covered: predicted objects (instance labels, else the
    8-connected components of the mask) matched to true instances at IoU >= `min_iou` (a match
    above 0.5 is unique); F1 of the matches and the relative count error."""
    labels = pred if pred.dtype != bool else ndimage.label(pred, structure=np.ones((3, 3)))[0]
    n_pred = int(len(np.unique(labels[labels > 0])))
    true_ids = np.unique(truth_labels[truth_labels > 0])
    n_true = len(true_ids)
    pairs, inter, ious, area_p, area_t = match_objects(labels, truth_labels)
    matched = ious >= min_iou
    tp = int(matched.sum())
    fp, fn = n_pred - tp, n_true - tp
    pq = float(ious[matched].sum()) / max(1e-9, tp + fp / 2 + fn / 2)
    return {"object_f1": 2 * tp / max(1, n_pred + n_true),
            "count_error": abs(n_pred - n_true) / max(1, n_true),
            "aji": _aji(labels, truth_labels, pairs, inter, area_p, area_t, true_ids),
            "pq": pq, "objects_pred": n_pred, "objects_true": n_true}


def _aji(labels: np.ndarray, truth: np.ndarray, pairs: np.ndarray, inter: np.ndarray,
         area_p: np.ndarray, area_t: np.ndarray, true_ids: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017): each true object with the predicted
    object of highest IoU (intersection over union summed), every unused prediction added to
    the union."""
    union_pair = area_p[pairs[0]] + area_t[pairs[1]] - inter
    iou = inter / union_pair
    c = u = 0.0
    used = set()
    for t in true_ids:
        here = np.nonzero(pairs[1] == t)[0]
        if not len(here):
            u += area_t[t]
            continue
        best = here[np.argmax(iou[here])]
        c += inter[best]
        u += union_pair[best]
        used.add(int(pairs[0][best]))
    pred_ids = np.unique(labels[labels > 0])
    u += float(sum(area_p[p] for p in pred_ids if int(p) not in used))
    return c / max(u, 1e-9)


def shot_references(dataset: Path, k_max: int) -> list[str]:
    """The k-shot references: sorted stems at positions i * n // k_max (k = 1: ref0)."""
    stems = sorted(p.stem for p in (dataset / "images").iterdir())
    return [stems[i * len(stems) // k_max] for i in range(k_max)]


def run_shots(seg: Segmenter, datasets: list[str], shots: list[int], max_targets: int
              ) -> dict:
    """Mean Dice with k pooled references, on one target set per dataset: up to
    `max_targets` stems at evenly spaced positions among those that are no reference for any k.
    The k references are the stems at positions i * n // k (k = 1: ref0; k = 3: the protocol's
    ref0, ref1, ref2)."""
    out: dict = {}
    for ds_name in datasets:
        ds = TILES / ds_name
        refs_by_k = {k: shot_references(ds, k) for k in shots}
        used = {s for refs in refs_by_k.values() for s in refs}
        rest = [s for s in sorted(p.stem for p in (ds / "images").iterdir()) if s not in used]
        idx = np.unique(np.linspace(0, len(rest) - 1, min(max_targets, len(rest))).round())
        targets = [rest[int(i)] for i in idx]
        out[ds_name] = {}
        for k, ref_stems in refs_by_k.items():
            reference = seg.prepare_reference([load_pair(ds, s) for s in ref_stems], ref_stems)
            d = [dice(seg.segment([img], reference)[0].mask, truth)
                 for img, truth in (load_pair(ds, s) for s in targets)]
            out[ds_name][k] = {"references": ref_stems, "mean_dice": float(np.mean(d)),
                               "targets": len(targets), "mode": reference.calibration.mode}
            print(f"{ds_name} k={k} ({', '.join(ref_stems)}): mean Dice {np.mean(d):.3f} on "
                  f"{len(targets)} targets, mode {reference.calibration.mode}", flush=True)
    return out


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
            ref_inst = ds / "instance_masks" / f"{ref_stem}.png"
            if ref_inst.is_file():  # its instance labels: they tell the objects' size
                ref_pair = (ref_pair[0], np.asarray(Image.open(ref_inst)).astype(np.int32))
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
                inst = ds / "instance_masks" / f"{stem}.png"
                if inst.is_file():
                    row.update(object_scores(res.labels if res.labels is not None else res.mask,
                                             np.asarray(Image.open(inst))))
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
            objects = [r for r in rows if "object_f1" in r]
            counted = "" if not objects else "  " + "  ".join(
                f"{k} {np.mean([r[k] for r in objects]):.3f}"
                for k in ("object_f1", "aji", "pq", "count_error")) + f" ({len(objects)} targets)"
            print(f"{ds_name} {ref_name} ({ref_stem}): mean Dice {np.mean(d):.3f} median "
                  f"{np.median(d):.3f}  mode={cal.mode} thr={cal.threshold:+.2f} "
                  f"pixel={cal.use_pixel}  ref {t_ref:.0f}s  "
                  f"{np.median([r['seconds'] for r in rows]):.2f}s/img{counted}", flush=True)
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
    for ds, refs in report["datasets"].items():
        rows = refs.get("ref0", {}).get("targets", [])
        obj = [r for r in rows if "object_f1" in r]
        if obj:
            lines.append(f"\n{ds} (ref0), objects at IoU >= 0.5 on the {len(obj)} targets with "
                         f"instance masks: F1 {np.mean([r['object_f1'] for r in obj]):.3f}, "
                         f"count error {np.mean([r['count_error'] for r in obj]):.2f} (mean "
                         f"|predicted - true| / true)")
    if report.get("shots"):
        ks = sorted({int(k) for v in report["shots"].values() for k in v})
        lines.append("\n| dataset | " + " | ".join(f"k={k}" for k in ks) + " |")
        lines.append("|---|" + "---|" * len(ks))
        for ds, v in report["shots"].items():
            lines.append(f"| {ds} | " + " | ".join(f"{v[k]['mean_dice']:.3f}" if k in v else "–"
                                                   for k in ks) + " |")
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
    parser.add_argument("--shots", default="",
                        help="also the k-shot curve, e.g. 1,3,5 (pooled references)")
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
    report = run(args) if args.refs else {"datasets": {}}
    if args.shots:
        cfg = load_config(None, args.set)
        datasets = args.datasets.split(",") if args.datasets else sorted(
            p.name for p in TILES.iterdir() if p.is_dir())
        report["shots"] = run_shots(Segmenter.from_config(cfg), datasets,
                                    [int(k) for k in args.shots.split(",")], args.max_targets)
        out = Path(args.out) / "accuracy.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
