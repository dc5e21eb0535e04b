"""Command-line interface: parse, build the config, call the library, map errors to exit codes.

Exit codes: 0 success; 2 a user or environment problem (one-line message on stderr, no
traceback); 1 an internal error (a bug: please report it with the traceback).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from wsi_sat import __version__
from wsi_sat.config import Config, config_to_yaml, load_config
from wsi_sat.errors import ConfigError, WsiSatError

log = logging.getLogger("wsi_sat")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("PIL", "matplotlib", "distributed", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _Group(click.Group):
    """Turns WsiSatError (and a full, read-only or forbidden disk) into a one-line message and
    exit code 2; Ctrl-C into exit code 130 with where to resume."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from wsi_sat.writers.atomic import DISK_ERRORS

        try:
            return super().invoke(ctx)
        except WsiSatError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # one line, like every other user mistake
            where = f" (see `wsi-sat {exc.ctx.info_name} --help`)" if exc.ctx else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            ctx.exit(2)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:
                raise
            where = f" '{exc.filename}'" if exc.filename else ""
            click.echo(f"error: cannot write{where}: {exc.strerror}; free space or fix the "
                       "permissions, then rerun with --resume", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished batches are kept; rerun the same command with "
                       "--resume to continue", err=True)
            ctx.exit(130)


class Mpp(click.ParamType):
    """A pixel size in µm/px: finite, between 0.01 and 100."""

    name = "MPP"

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            mpp = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number (µm/px)", param, ctx)
        if not (0.01 <= mpp <= 100.0):  # also NaN and inf
            self.fail(f"{value} µm/px is not a plausible pixel size (0.01-100; 0.25 = 40x, "
                      "0.5 = 20x)", param, ctx)
        return mpp


MPP = Mpp()


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None,
    help="YAML file with config overrides (a partial tree of `wsi-sat config show`).",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override one config key, e.g. --set sat.decode.mode=union (repeatable).",
)
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
    help="Compute device (default: runtime.device, auto = cuda > mps > cpu).",
)


negative_option = click.option(
    "--negative", "negatives", multiple=True, type=click.Path(path_type=Path),
    help="Image of tissue that is NOT the target (repeatable): a negative example.")
negative_mask_option = click.option(
    "--negative-mask", "negative_masks", multiple=True, type=click.Path(path_type=Path),
    help="Mask of each --negative, same order: which pixels are non-target (default: the "
         "whole image).")


def _config(config_path: Path | None, overrides: tuple[str, ...], device: str | None = None
            ) -> Config:
    extra = (f"runtime.device={device}",) if device else ()
    return load_config(config_path, tuple(overrides) + extra)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-sat")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def app(verbose: int, quiet: bool) -> None:
    """wsi-sat: segment a tissue structure everywhere from ONE annotated example."""
    _setup_logging(verbose, quiet)


@app.command()
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
    from wsi_sat.api import check_negatives, load_negatives, load_references
    from wsi_sat.errors import InputImageError
    from wsi_sat.io.image import list_images, probe_image, read_image
    from wsi_sat.segmenter import Segmenter
    from wsi_sat.writers.atomic import writable_dir
    from wsi_sat.writers.mask_png import write_mask_png

    cfg = _config(config_path, overrides, device)
    paths = list_images(list(targets))
    refs = load_references(references, reference_masks)
    negs = load_negatives(negatives, negative_masks)
    check_negatives(refs, negs)
    readable, failed = [], []
    for p in paths:  # unreadable targets are found before minutes of work, not after
        try:
            probe_image(p)
            readable.append(p)
        except InputImageError as exc:
            failed.append(str(exc))
    if not readable:
        raise InputImageError(failed[0] if len(failed) == 1 else
                              f"none of the {len(paths)} targets is readable: {failed[0]}")
    writable_dir(out_dir)
    for message in failed:
        click.echo(f"warning: {message}; skipped", err=True)
    t0 = time.perf_counter()
    seg = Segmenter.from_config(cfg)
    reference = seg.prepare_reference([(r.image, r.mask) for r in refs], [r.name for r in refs],
                                      negatives=[(n.image, n.mask) for n in negs])
    cal = reference.calibration
    log.info("reference ready in %.1fs: mode=%s threshold=%.3f pixel=%s",
             time.perf_counter() - t0, cal.mode, cal.threshold, cal.use_pixel)
    for p in readable:
        try:
            image, _ = read_image(p)
        except InputImageError as exc:  # corrupt past its header
            failed.append(str(exc))
            click.echo(f"warning: {exc}; skipped", err=True)
            continue
        t = time.perf_counter()
        result = seg.segment([image], reference, mpp=mpp)[0]
        write_mask_png(out_dir / f"{p.stem}.png", result.mask)
        click.echo(f"{p.name}: {100 * result.mask.mean():.1f}% foreground, mode {result.mode}, "
                   f"{result.n_positive}+/{result.n_negative}- points, "
                   f"{time.perf_counter() - t:.1f}s")
    click.echo(f"wrote {len(paths) - len(failed)} masks to {out_dir}")
    if failed:
        raise InputImageError(f"{len(failed)} of {len(paths)} targets could not be read (see "
                              "the warnings above); the others are written")


@app.command()
@click.argument("slides", nargs=-1, required=True)
@click.option("--reference", "references", multiple=True, type=click.Path(path_type=Path),
              help="Reference image (repeatable).")
@click.option("--reference-mask", "reference_masks", multiple=True,
              type=click.Path(path_type=Path), help="Mask of each --reference, same order.")
@click.option("--reference-mpp", type=MPP, default=None,
              help="Pixel size of the reference image in µm/px (default: the working mpp).")
@click.option("--reference-geojson", type=click.Path(path_type=Path), default=None,
              help="QuPath annotation (GeoJSON) of the reference region on --reference-slide.")
@click.option("--reference-slide", type=click.Path(path_type=Path), default=None,
              help="Slide the --reference-geojson annotation was drawn on.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output folder.")
@click.option("--mpp", type=MPP, default=None,
              help="Working resolution in µm/px (default: --reference-mpp, else each slide's "
                   "level-0 mpp).")
@click.option("--slide-mpp", type=MPP, default=None,
              help="Level-0 pixel size in µm/px, overriding (or standing in for missing) metadata.")
@click.option("--tile-px", type=int, default=None, help="Tile side in working pixels [1024].")
@click.option("--overlap-px", type=int, default=None,
              help="Tile overlap in working pixels, even [128].")
@click.option("--workers", type=int, default=None,
              help="Local Dask worker processes [wsi.workers = 0: no Dask, in this process].")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler.")
@click.option("--cluster", "cluster_file", type=click.Path(path_type=Path), default=None,
              help="dask-jobqueue SLURM cluster YAML (see examples/slurm.yaml).")
@click.option("--resume", is_flag=True, help="Skip batches finished by an interrupted run.")
@click.option("--class-name", default=None,
              help="QuPath class of the objects [wsi.class_name]; with --reference-geojson the "
                   "target class (default: its most frequent class; other classes are "
                   "negatives).")
@negative_option
@negative_mask_option
@config_option
@set_option
@device_option
def run(slides: tuple[str, ...], references: tuple[Path, ...], reference_masks: tuple[Path, ...],
        reference_mpp: float | None, reference_geojson: Path | None,
        reference_slide: Path | None, out_dir: Path, mpp: float | None,
        slide_mpp: float | None, tile_px: int | None, overlap_px: int | None,
        workers: int | None, scheduler: str | None, cluster_file: Path | None, resume: bool,
        class_name: str | None, negatives: tuple[Path, ...], negative_masks: tuple[Path, ...],
        config_path: Path | None, overrides: tuple[str, ...], device: str | None) -> None:
    """Segment whole SLIDEs (files, folders or globs) like the reference."""
    from wsi_sat import api
    from wsi_sat.config import WsiConfig
    from wsi_sat.io.qupath import UNCLASSIFIED
    from wsi_sat.io.slide import list_slides, probe_slide
    from wsi_sat.pipeline.plan import check_output_names
    from wsi_sat.runtime.cluster import dask_client
    from wsi_sat.writers.atomic import writable_dir
    from wsi_sat.writers.tables import slide_row, write_summary

    extra = [f"wsi.{k}={v}" for k, v in (("tile_px", tile_px), ("overlap_px", overlap_px),
                                         ("workers", workers), ("class_name", class_name))
             if v is not None]
    cfg = _config(config_path, tuple(overrides) + tuple(extra), device)
    if sum(x is not None for x in (scheduler, cluster_file)) > 1:
        raise ConfigError("give at most one of --scheduler and --cluster")
    paths = list_slides(slides)
    check_output_names(paths)
    writable_dir(out_dir)
    for path in paths:  # unreadable slides and missing pixel sizes fail before model loading
        probe_slide(path, slide_mpp)
    refs = api.read_references(
        references, masks=reference_masks, reference_mpp=reference_mpp, working_mpp=mpp,
        geojson=reference_geojson, slide=reference_slide, slide_mpp=slide_mpp,
        margin=cfg.wsi.reference_margin, negatives=negatives, negative_masks=negative_masks,
        class_name=class_name)
    unset = class_name is None and cfg.wsi.class_name == WsiConfig().class_name
    if unset and refs.class_name not in (None, UNCLASSIFIED):
        cfg = cfg.model_copy(update={"wsi": cfg.wsi.model_copy(
            update={"class_name": refs.class_name})})  # the objects take the reference's class
    t0 = time.perf_counter()
    seg = api.load_segmenter(cfg)
    reference = api.prepare_reference(seg, refs)
    cal = reference.embedding.calibration
    click.echo(f"reference ready in {time.perf_counter() - t0:.1f}s: mode {cal.mode}, "
               f"threshold {cal.threshold:+.3f}, pixel model {cal.use_pixel}", err=True)
    rows = []
    with dask_client(cfg, scheduler, cluster_file) as client:
        for path in paths:
            summary = api.run_slide(path, reference, seg, cfg, out_dir, slide_mpp=slide_mpp,
                                    mpp=mpp, resume=resume, client=client)
            record = json.loads(Path(summary.outputs["run"]).read_text())
            rows.append(slide_row(summary.slide, record,
                                  "skipped (done)" if summary.skipped else "done"))
            write_summary(out_dir / "summary.csv", rows)  # after every slide: a cohort's log
            if summary.skipped:
                click.echo(f"{summary.slide}: already done with these inputs "
                           f"({summary.outputs['run']}); skipped")
                continue
            click.echo(
                f"{summary.slide}: {summary.tiles_segmented}/{summary.tiles_grid} tiles "
                f"segmented (tissue {summary.tiles_tissue}), {summary.objects} objects, "
                f"{summary.seconds:.1f}s -> {summary.outputs.get('geojson', '')}")


@app.command("eval")
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


@app.group()
def models() -> None:
    """Registered models and their weights."""


@models.command("list")
def models_list() -> None:
    """Registered models, what they are for, and where their weights are."""
    from wsi_sat.models.registry import REGISTRY, candidate_weight_path

    for spec in REGISTRY.values():
        path = candidate_weight_path(spec, None) if spec.filename else None
        where = "no weights needed" if not spec.filename else (
            str(path) if path and path.is_file() else f"not installed ({spec.source})")
        tag = " [embedded default]" if spec.embedded and spec.filename else ""
        click.echo(f"{spec.name:15s} {spec.kind:9s} {where}{tag}")


@models.command("verify")
@config_option
@set_option
def models_verify(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Check the sha256 of every installed weight file (exit 2 on a mismatch)."""
    from wsi_sat.errors import WeightsError
    from wsi_sat.models.registry import REGISTRY, verify

    cfg = _config(config_path, overrides)
    chosen = {cfg.models.sam.name: cfg.models.sam.checkpoint,
              cfg.models.features.name: cfg.models.features.checkpoint}
    bad = []
    for spec in REGISTRY.values():
        status = verify(spec, chosen.get(spec.name))
        if status.state == "not-needed":
            continue
        detail = f"{status.path}" if status.path else "-"
        click.echo(f"{spec.name:15s} {status.state:10s} {detail}"
                   + (f" sha256 {status.sha256}" if status.sha256 else ""))
        if status.state == "mismatch" or (spec.name in chosen and status.state == "missing"):
            bad.append(spec.name)
    if bad:
        raise WeightsError(f"weights missing or corrupt for: {', '.join(bad)}; see above")


@app.group("config")
def config_group() -> None:
    """The configuration."""


@config_group.command("show")
@config_option
@set_option
def config_show(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config as YAML."""
    click.echo(config_to_yaml(_config(config_path, overrides)), nl=False)


@app.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo_out"),
              show_default=True, help="Where the demo writes its inputs and results.")
@device_option
def demo(out_dir: Path, device: str | None) -> None:
    """Real segmentation on scikit-image's IHC image: no data of yours needed."""
    from wsi_sat.demo import run_demo

    scores = run_demo(out_dir, _config(None, ("wsi.workers=0", "wsi.tile_px=512",
                                               "wsi.overlap_px=64"), device))
    for name, value in scores.items():
        click.echo(f"{name}: Dice {value:.3f} against its stain-derived (DAB) mask")
    mean = sum(scores.values()) / len(scores)
    click.echo(f"demo: mean Dice {mean:.3f}; reference, targets, masks/ and overlays/ in "
               f"{out_dir}/; whole-slide outputs (OME-Zarr, GeoJSON for QuPath, run.json, "
               f"overview) in {out_dir}/results/")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
