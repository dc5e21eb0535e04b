"""`wsi-sat run`: whole slides."""

from __future__ import annotations

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
from wsi_sat.errors import ConfigError


@click.command()
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
              help="dask-jobqueue cluster YAML: SLURM, PBS or LSF (see examples/slurm.yaml).")
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
    from wsi_sat.pipeline.plan import RunOptions, check_output_names, check_slide
    from wsi_sat.runtime.cluster import dask_client
    from wsi_sat.writers.atomic import writable_dir

    extra = [f"wsi.{k}={v}" for k, v in (("tile_px", tile_px), ("overlap_px", overlap_px),
                                         ("workers", workers), ("class_name", class_name))
             if v is not None]
    cfg = build_config(config_path, tuple(overrides) + tuple(extra), device)
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
    options = RunOptions(out_dir, slide_mpp, mpp)
    for path in paths:  # a grid too large (a typo in an mpp) or a slide thinner than a patch
        check_slide(path, cfg.wsi, options, refs.mpp)
    unset = class_name is None and cfg.wsi.class_name == WsiConfig().class_name
    if unset and refs.class_name not in (None, UNCLASSIFIED):
        cfg = cfg.model_copy(update={"wsi": cfg.wsi.model_copy(
            update={"class_name": refs.class_name})})  # the objects take the reference's class
    # the scheduler or cluster first: a wrong address fails before the models load, and
    # SLURM jobs queue while the reference is prepared
    with dask_client(cfg, scheduler, cluster_file) as client:
        t0 = time.perf_counter()
        seg = api.load_segmenter(cfg)
        reference = api.prepare_reference(seg, refs)
        cal = reference.embedding.calibration
        click.echo(f"reference ready in {time.perf_counter() - t0:.1f}s: mode {cal.mode}, "
                   f"threshold {cal.threshold:+.3f}, pixel model {cal.use_pixel}", err=True)
        for summary in api.run_slides(paths, reference, seg, cfg, out_dir, slide_mpp=slide_mpp,
                                      mpp=mpp, resume=resume, client=client):
            if summary.skipped:
                click.echo(f"{summary.slide}: already done with these inputs "
                           f"({summary.outputs['run']}); skipped")
                continue
            click.echo(
                f"{summary.slide}: {summary.tiles_segmented}/{summary.tiles_grid} tiles "
                f"segmented (tissue {summary.tiles_tissue}), {summary.objects} objects, "
                f"{summary.seconds:.1f}s -> {summary.outputs.get('geojson', '')}")
