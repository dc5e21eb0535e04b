"""`wsi-sat run`: whole slides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wsi_sat.cli.options import (
    build_config,
    config_option,
    default_hint,
    device_option,
    reference_options,
    set_option,
)
from wsi_sat.config import Config
from wsi_sat.errors import ConfigError

if TYPE_CHECKING:
    from wsi_sat.io.slide import SlideSource
    from wsi_sat.pipeline import SlideSummary
    from wsi_sat.reference import ReferenceRequest, ReferenceSet


@click.command()
@click.argument("slides", nargs=-1, required=True)  # files, folders, globs, slide lists
@reference_options
@click.option("--reference-cache", type=click.Path(path_type=Path), default=None,
              help="A reference prepared by `wsi-sat reference prepare` (instead of "
                   "--reference / --reference-geojson; refused unless prepared with this "
                   "config, weights and version).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output folder.")
@click.option("--tile-px", type=int, default=None,
              help=f"Tile side in working pixels {default_hint('wsi', 'tile_px')}.")
@click.option("--overlap-px", type=int, default=None,
              help=f"Tile overlap in working pixels, even {default_hint('wsi', 'overlap_px')}.")
@click.option("--workers", type=int, default=None,
              help="Local Dask worker processes [wsi.workers = 0: no Dask, in this process].")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler.")
@click.option("--cluster", "cluster_file", type=click.Path(path_type=Path), default=None,
              help="dask-jobqueue cluster YAML: SLURM, PBS or LSF (see examples/slurm.yaml).")
@click.option("--resume", is_flag=True, help="Skip batches finished by an interrupted run.")
@click.option("--allow-upsampling", is_flag=True,
              help="Accept a working resolution finer than a slide's level 0 (refused "
                   "otherwise: past 1.1x with --mpp, past 2x from the reference).")
@config_option
@set_option
@device_option
def run(slides: tuple[str, ...], request: ReferenceRequest, reference_cache: Path | None,
        out_dir: Path, tile_px: int | None, overlap_px: int | None, workers: int | None,
        scheduler: str | None, cluster_file: Path | None, resume: bool, allow_upsampling: bool,
        config_path: Path | None, overrides: tuple[str, ...], device: str | None) -> None:
    """Segment whole SLIDEs (files, folders or globs) like the reference."""
    from wsi_sat import api
    from wsi_sat.runtime.cluster import dask_client

    extra = [f"wsi.{k}={v}" for k, v in (("tile_px", tile_px), ("overlap_px", overlap_px),
                                         ("workers", workers),
                                         ("class_name", request.class_name)) if v is not None]
    cfg = build_config(config_path, tuple(overrides) + tuple(extra), device)
    if sum(x is not None for x in (scheduler, cluster_file)) > 1:
        raise ConfigError("give at most one of --scheduler and --cluster")
    if reference_cache is not None and (request.images or request.geojson or request.negatives):
        raise ConfigError("give --reference-cache or the reference (--reference, "
                          "--reference-geojson, --negative), not both")
    paths, refs, cfg = _check_inputs(slides, request, reference_cache, out_dir, cfg,
                                     allow_upsampling)
    # the scheduler or cluster first: a wrong address fails before the models load, and
    # SLURM jobs queue while the reference is prepared
    with dask_client(cfg, scheduler, cluster_file) as client:
        t0 = time.perf_counter()
        seg = api.load_segmenter(cfg)
        if refs is None:
            reference, _ = api.load_prepared_reference(reference_cache, seg)
            how = f"read from {reference_cache}"
        else:
            reference, how = api.prepare_reference(seg, refs, out_dir=out_dir), "ready"
        cal = reference.embedding.calibration
        click.echo(f"reference {how} in {time.perf_counter() - t0:.1f}s: mode {cal.mode}, "
                   f"threshold {cal.threshold:+.3f}, pixel model {cal.use_pixel}", err=True)
        for summary in api.run_slides(paths, reference, seg, cfg, out_dir,
                                      slide_mpp=request.slide_mpp, mpp=request.working_mpp,
                                      resume=resume, client=client,
                                      allow_upsampling=allow_upsampling):
            _report(summary)


def _check_inputs(slides: tuple[str, ...], request: ReferenceRequest,
                  reference_cache: Path | None, out_dir: Path, cfg: Config,
                  allow_upsampling: bool
                  ) -> tuple[list[SlideSource], ReferenceSet | None, Config]:
    """Everything a user can get wrong, before models load: the slides (readable, with a pixel
    size, distinct output names, a plannable grid), the output folder and the reference (read,
    or the cache's metadata). Returns the slides (each with the pixel size a slide list gave
    it), the references (None: from the cache) and the config with the reference's class."""
    from wsi_sat.cli.references import read_request, with_class_name
    from wsi_sat.io.slide import list_slides, probe_slide
    from wsi_sat.pipeline.plan import RunOptions, check_output_names, check_slide
    from wsi_sat.reference.cache import read_cache_meta
    from wsi_sat.writers.atomic import writable_dir

    sources = list_slides(slides)
    check_output_names([s.path for s in sources])
    writable_dir(out_dir)
    for source in sources:  # unreadable slides and missing pixel sizes fail before the models
        probe_slide(source.path, source.mpp or request.slide_mpp)
    refs = None
    if reference_cache is not None:
        meta = read_cache_meta(reference_cache)
        reference_mpp = meta["mpp"]
        cfg = with_class_name(cfg, request.class_name, meta.get("class_name"))
    else:
        refs, cfg = read_request(cfg, request)
        reference_mpp = refs.mpp
    for source in sources:  # a grid too large (a typo in an mpp), a slide thinner than a patch
        options = RunOptions(out_dir=out_dir, slide_mpp=source.mpp or request.slide_mpp,
                             mpp=request.working_mpp, allow_upsampling=allow_upsampling)
        check_slide(source.path, cfg.wsi, options, reference_mpp)
    return sources, refs, cfg


def _report(summary: SlideSummary) -> None:
    if summary.skipped:
        click.echo(f"{summary.slide}: already done with these inputs "
                   f"({summary.outputs['run']}); skipped")
        return
    click.echo(f"{summary.slide}: {summary.tiles_segmented}/{summary.tiles_grid} tiles "
               f"segmented (tissue {summary.tiles_tissue}), {summary.objects} objects, "
               f"{summary.seconds:.1f}s -> {summary.outputs.get('geojson', '')}")
