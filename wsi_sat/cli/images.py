"""`wsi-sat segment` and `wsi-sat eval`: images, not slides."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from wsi_sat.cli.options import (
    MPP,
    build_config,
    config_option,
    device_option,
    negative_mask_option,
    negative_option,
    set_option,
)

log = logging.getLogger("wsi_sat")


@click.command()
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reference", "references", multiple=True, required=True,
              type=click.Path(path_type=Path),
              help="Reference image (repeatable: several references are pooled).")
@click.option("--reference-mask", "reference_masks", multiple=True,
              type=click.Path(path_type=Path),
              help="Mask of each --reference, in the same order (default: <stem>_mask.png "
                   "beside it, else its alpha channel).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: <stem>.png masks (0/255) at each target's original size.")
@click.option("--target-mpp", "mpp", type=MPP, default=None,
              help="Pixel size of the targets in µm/px (enables sat.postprocess.min_area_um2).")
@negative_option
@negative_mask_option
@config_option
@set_option
@device_option
def segment(targets: tuple[Path, ...], references: tuple[Path, ...],
            reference_masks: tuple[Path, ...], out_dir: Path, mpp: float | None,
            negatives: tuple[Path, ...], negative_masks: tuple[Path, ...],
            config_path: Path | None, overrides: tuple[str, ...], device: str | None) -> None:
    """Segment TARGET images or folders like the reference (one-shot, no training)."""
    from wsi_sat import api
    from wsi_sat.errors import InputImageError
    from wsi_sat.io.image import list_images
    from wsi_sat.writers.atomic import writable_dir

    cfg = build_config(config_path, overrides, device)
    paths = list_images(list(targets))
    refs = api.read_reference_set(api.ReferenceRequest(
        images=references, masks=reference_masks, negatives=negatives,
        negative_masks=negative_masks), cfg)
    readable, failed = _probe(paths)
    writable_dir(out_dir)
    for message in failed:
        click.echo(f"warning: {message}; skipped", err=True)
    t0 = time.perf_counter()
    seg = api.load_segmenter(cfg)
    reference = api.prepare_image_reference(seg, refs)
    cal = reference.calibration
    log.info("reference ready in %.1fs: mode=%s threshold=%.3f pixel=%s",
             time.perf_counter() - t0, cal.mode, cal.threshold, cal.use_pixel)
    done: api.ImageResult
    for path, done in zip(readable, api.segment_images(readable, reference, seg, mpp=mpp,
                                                       out_dir=out_dir)):
        if done.result is None:  # corrupt past its header
            failed.append(str(done.error))
            click.echo(f"warning: {done.error}; skipped", err=True)
            continue
        click.echo(f"{path.name}: {100 * done.foreground:.1f}% foreground, mode "
                   f"{done.result.mode}, {done.result.n_positive}+/{done.result.n_negative}- "
                   f"points, {done.seconds:.1f}s")
    click.echo(f"wrote {len(paths) - len(failed)} masks to {out_dir}")
    if failed:
        raise InputImageError(f"{len(failed)} of {len(paths)} targets could not be read (see "
                              "the warnings above); the others are written")


def _probe(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The targets whose headers read, and a message for each that does not (unreadable
    targets are found before minutes of work, not after); none readable is an error."""
    from wsi_sat.errors import InputImageError
    from wsi_sat.io.image import probe_image

    readable, failed = [], []
    for p in paths:
        try:
            probe_image(p)
            readable.append(p)
        except InputImageError as exc:
            failed.append(str(exc))
    if not readable:
        raise InputImageError(failed[0] if len(failed) == 1 else
                              f"none of the {len(paths)} targets is readable: {failed[0]}")
    return readable, failed


@click.command("eval")
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of predicted masks.")
@click.option("--truth", "truth_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of ground-truth masks (matched by file stem).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write per-image scores and the summary as JSON.")
def eval_cmd(pred_dir: Path, truth_dir: Path, json_out: Path | None) -> None:
    """Dice and IoU per image, with mean and median."""
    from wsi_sat.evaluate import evaluate_folders, summarise

    scores = evaluate_folders(pred_dir, truth_dir)
    for s in scores:
        click.echo(f"{s.stem}\tdice {s.dice:.4f}\tiou {s.iou:.4f}")
    summary = summarise(scores)
    click.echo(
        f"n={int(summary['n'])}  dice mean {summary['dice_mean']:.4f} median "
        f"{summary['dice_median']:.4f}  iou mean {summary['iou_mean']:.4f} median "
        f"{summary['iou_median']:.4f}"
    )
    if json_out:
        json_out.write_text(json.dumps(
            {"images": [s.__dict__ for s in scores], "summary": summary}, indent=2))
