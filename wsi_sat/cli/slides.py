"""`wsi-sat run`: whole slides."""

from __future__ import annotations

import time
from pathlib import Path

import click

from wsi_sat.cli.options import (
    build_config,
    config_option,
    device_option,
    reference_options,
    set_option,
)
from wsi_sat.errors import ConfigError


@click.command()
@click.argument("slides", nargs=-1, required=True)
@reference_options
@click.option("--reference-cache", type=click.Path(path_type=Path), default=None,
              help="A reference prepared by `wsi-sat reference prepare` (instead of "
                   "--reference / --reference-geojson; refused unless prepared with this "
                   "config, weights and version).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output folder.")
@click.option("--tile-px", type=int, default=None, help="Tile side in working pixels [1024].")
@click.option("--overlap-px", type=int, default=None,
              help="Tile overlap in working pixels, even [128].")
@click.option("--workers", type=int, default=None,
              help="Local Dask worker processes [wsi.workers = 0: no Dask, in this process].")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler.")
@click.option("--cluster", "cluster_file", type=click.Path(path_type=Path), default=None,
              help="dask-jobqueue cluster YAML: SLURM, PBS or LSF (see examples/slurm.yaml).")
@click.option("--resume", is_flag=True, help="Skip batches finished by an interrupted run.")
@config_option
@set_option
@device_option
def run(slides: tuple[str, ...], references: tuple[Path, ...], reference_masks: tuple[Path, ...],
        reference_mpp: float | None, reference_geojson: Path | None,
        reference_slide: Path | None, mpp: float | None, slide_mpp: float | None,
        class_name: str | None, negatives: tuple[Path, ...], negative_masks: tuple[Path, ...],
        reference_cache: Path | None, out_dir: Path, tile_px: int | None,
        overlap_px: int | None, workers: int | None, scheduler: str | None,
        cluster_file: Path | None, resume: bool, config_path: Path | None,
        overrides: tuple[str, ...], device: str | None) -> None:
    """Segment whole SLIDEs (files, folders or globs) like the reference."""
    from wsi_sat import api
    from wsi_sat.cli.references import read_reference_set, with_class_name
    from wsi_sat.io.slide import list_slides, probe_slide
    from wsi_sat.pipeline.plan import RunOptions, check_output_names, check_slide
    from wsi_sat.pipeline.reference_cache import read_cache_meta
    from wsi_sat.runtime.cluster import dask_client
    from wsi_sat.writers.atomic import writable_dir

    extra = [f"wsi.{k}={v}" for k, v in (("tile_px", tile_px), ("overlap_px", overlap_px),
                                         ("workers", workers), ("class_name", class_name))
             if v is not None]
    cfg = build_config(config_path, tuple(overrides) + tuple(extra), device)
    if sum(x is not None for x in (scheduler, cluster_file)) > 1:
        raise ConfigError("give at most one of --scheduler and --cluster")
    if reference_cache is not None and (references or reference_geojson or negatives):
        raise ConfigError("give --reference-cache or the reference (--reference, "
                          "--reference-geojson, --negative), not both")
    paths = list_slides(slides)
    check_output_names(paths)
    writable_dir(out_dir)
    for path in paths:  # unreadable slides and missing pixel sizes fail before model loading
        probe_slide(path, slide_mpp)
    refs = None
    if reference_cache is not None:
        meta = read_cache_meta(reference_cache)
        reference_mpp_used = meta["mpp"]
        cfg = with_class_name(cfg, class_name, meta.get("class_name"))
    else:
        refs, cfg = read_reference_set(cfg, references, reference_masks, reference_mpp,
                                       reference_geojson, reference_slide, mpp, slide_mpp,
                                       class_name, negatives, negative_masks)
        reference_mpp_used = refs.mpp
    options = RunOptions(out_dir, slide_mpp, mpp)
    for path in paths:  # a grid too large (a typo in an mpp) or a slide thinner than a patch
        check_slide(path, cfg.wsi, options, reference_mpp_used)
    # the scheduler or cluster first: a wrong address fails before the models load, and
    # SLURM jobs queue while the reference is prepared
    with dask_client(cfg, scheduler, cluster_file) as client:
        t0 = time.perf_counter()
        seg = api.load_segmenter(cfg)
        if reference_cache is not None:
            reference, _ = api.load_prepared_reference(reference_cache, seg)
            how = f"read from {reference_cache}"
        else:
            reference = api.prepare_reference(seg, refs)
            how = "ready"
        cal = reference.embedding.calibration
        click.echo(f"reference {how} in {time.perf_counter() - t0:.1f}s: mode {cal.mode}, "
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
