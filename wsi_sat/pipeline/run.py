"""run_slide(): plan → (coarse pass) → batches on lanes or Dask workers → finalize. Resumable:
batches whose shard exists are skipped with `resume`; nothing that looks complete is written
before the last step."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wsi_sat.config import INSTANCE_MODES, Config, config_to_dict
from wsi_sat.geometry import Scale
from wsi_sat.encodings import TileEncodings, encodings_root, tiles_key
from wsi_sat.io.slide import Slide
from wsi_sat.pipeline.batch import BatchTask, segment_batch
from wsi_sat.pipeline.coarse import select_tiles
from wsi_sat.pipeline.finalize import SlideSummary, finalize_slide
from wsi_sat.pipeline.distributed import run_on_dask
from wsi_sat.pipeline.plan import (
    OutputPaths,
    RunOptions,
    SlidePlan,
    check_upsampling,
    output_stem,
    plan_batches,
    plan_slide,
    working_mpp,
)
from wsi_sat.pipeline.resume import finished, mark_store, prepare
from wsi_sat.pipeline.survey import Survey, survey_slide
from wsi_sat.reference import SlideReference
from wsi_sat.runtime.cpu import CpuAccount
from wsi_sat.runtime.heap import frozen_heap
from wsi_sat.runtime.progress import Progress
from wsi_sat.runtime.lanes import local_lanes, run_in_lanes
from wsi_sat.segmenter import Segmenter
from wsi_sat.signature import encoder_identity, run_key, slide_sha256
from wsi_sat.stitch.labels import instance_label_dtype
from wsi_sat.tiling.grid import Tile
from wsi_sat.writers.atomic import writable_dir
from wsi_sat.writers.lock import output_lock
from wsi_sat.writers.tables import update_summary
from wsi_sat.writers.ome_zarr import create_level0
from wsi_sat.writers.provenance import model_info, run_context, utc_now, versions


def run_slide(slide_path: Path, reference: SlideReference, segmenter: Segmenter,
              config: Config, options: RunOptions, client: Any = None) -> SlideSummary:
    """Segment one slide like `reference` into `options.out_dir`. `client` None runs the
    batches in this process on its lanes (with `segmenter`'s models); a Dask client runs them
    on its workers (each loads its models once)."""
    t_start, started = time.perf_counter(), utc_now()
    cpu = CpuAccount(segmenter.engine.encoder_cpu)
    if segmenter.config != config:  # the run's config decides; the models stay loaded
        segmenter = segmenter.with_config(config)
    paths = OutputPaths(output_stem(slide_path), writable_dir(Path(options.out_dir)))
    # numpy's BLAS on one thread for the whole run, the survey's clustering and decision fit
    # included (see wsi_sat.runtime.threads: its idle workers spin after each call); the
    # objects alive now (modules, models, reference) out of the garbage collector's full
    # collections (wsi_sat.runtime.heap)
    with output_lock(paths.lock), Slide(Path(slide_path), options.slide_mpp) as slide, \
            segmenter.blas_one_thread(), frozen_heap():
        slide_mpp = slide.require_mpp()
        working = working_mpp(slide_mpp, options, reference.mpp)
        check_upsampling(slide.path.name, Scale(slide_mpp, working), options)
        key = run_key(slide_path, reference.info, config, model_info(segmenter),
                      options.slide_mpp, working)
        done = finished(paths, key) if options.resume else None
        if done is not None:  # a cohort --resume: this slide is complete with these inputs
            return SlideSummary(paths.stem, done["tiles"]["grid"], done["tiles"]["tissue"],
                                done["tiles"]["segmented"], done["objects"], 0.0,
                                paths.outputs(), skipped=True)
        for part in paths.leftover_parts():  # temporary files of a killed run
            part.unlink(missing_ok=True)
        if paths.run_json.exists():  # an earlier run's "done" would outlive an interruption
            update_summary(paths.out_dir, paths.stem, None, "unfinished")
        summary = _segment_slide(slide, working, key, paths, reference, segmenter, options,
                                 client, _Clock(t_start, started, cpu))
        record = finished(paths, key)
        if record is not None:
            update_summary(paths.out_dir, paths.stem, record, "done")
        return summary


@dataclass(frozen=True)
class _Clock:
    """When the run started (wall and UTC) and its CPU account."""

    t_start: float
    started_utc: str
    cpu: CpuAccount


def _segment_slide(slide: Slide, working: float, key: str, paths: OutputPaths,
                   reference: SlideReference, segmenter: Segmenter, options: RunOptions,
                   client: Any, clock: _Clock) -> SlideSummary:
    """Plan, (coarse pass), survey, batches, finalize: a slide not yet complete."""
    config = segmenter.config
    # in this process: lanes over this process's torch threads; Dask workers size their own
    lanes, threads = local_lanes(config.runtime) if client is None else (1, 0)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    plan = plan_slide(slide, config.wsi, working)
    timings["tissue"] = time.perf_counter() - t
    tiles, coarse_info = _select(slide, plan, reference, segmenter, timings)
    t = time.perf_counter()
    store = _tile_store(slide.path, paths, plan, segmenter)
    timings["encodings_key"] = time.perf_counter() - t
    t = time.perf_counter()
    survey = survey_slide(slide, plan, reference.embedding, segmenter, store,
                          threads if client is None else 0, keep_encodings=client is None,
                          lanes=lanes if client is None else 1)
    timings["survey"] = time.perf_counter() - t
    instances = reference.embedding.calibration.mode in INSTANCE_MODES
    prepare(paths, key, options.resume)
    tasks = _tasks(slide.path, plan, tiles, paths, instances, config, threads, key, store)
    t = time.perf_counter()
    ran = _run_batches(tasks, survey, plan, segmenter, client, lanes, options, paths.stem,
                       len(tiles))
    timings["segment_wall"] = time.perf_counter() - t
    unfinished = [x for x in tasks if not Path(x.shard_path).is_file()]
    if unfinished:  # stopped early (max_batches): leave shards + partial zarr for --resume
        done = len(tiles) - sum(len(x.tiles) for x in unfinished)
        return SlideSummary(paths.stem, plan.grid.n_grid, len(plan.tiles), done, 0,
                            time.perf_counter() - clock.t_start)
    record = _record(slide, plan, tiles, len(tasks), coarse_info, reference, segmenter,
                     options)
    record["open_set"] = survey.info
    record["tiles"]["survey_encodings"] = {"encoded": survey.encoded, "reused": survey.reused}
    record.update(run_key=key, started_utc=clock.started_utc)
    # CPU time is this process's: with Dask workers the tiles ran elsewhere
    return finalize_slide(slide, plan, paths, tiles, instances, config.wsi, record, timings,
                          clock.t_start, (clock.cpu, ran) if client is None else None,
                          _expected_um2(reference, segmenter, plan))


def _expected_um2(reference: SlideReference, segmenter: Segmenter, plan: SlidePlan
                  ) -> tuple[float, float] | None:
    """The reference objects' area range in µm² (their size is kept in encoder-input px)."""
    objects = reference.embedding.objects
    if objects is None:
        return None
    per_px = segmenter.tile_scale(segmenter.config.wsi.tile_px) ** 2  # input px² per working px²
    return (plan.scale.area_um2(objects.area_low / per_px),
            plan.scale.area_um2(objects.area_high / per_px))


def _select(slide: Slide, plan: SlidePlan, reference: SlideReference, segmenter: Segmenter,
            timings: dict[str, float]) -> tuple[list[Tile], dict[str, Any]]:
    """The tiles to segment: every tissue tile, or those the coarse pass selects."""
    wcfg = segmenter.config.wsi
    if reference.coarse is None or wcfg.coarse_downsample <= 1 or not plan.tiles:
        return plan.tiles, {"enabled": False}
    sel = select_tiles(segmenter, reference.coarse, slide, plan, wcfg)
    timings["coarse"] = sel.seconds
    return sel.tiles, {"enabled": True, "downsample": wcfg.coarse_downsample,
                       "coarse_tiles": sel.coarse_tiles, "selected": len(sel.tiles)}


def _tile_store(slide_path: Path, paths: OutputPaths, plan: SlidePlan, segmenter: Segmenter
                ) -> TileEncodings:
    """This slide's tile encodings, kept under `wsi.encodings_dir` (or `<out>/encodings`)
    when `wsi.keep_encodings` is on, signed by the slide's bytes, grid and encoder."""
    wcfg = segmenter.config.wsi
    root = encodings_root(wcfg, paths.out_dir)
    if root is None:
        return TileEncodings(None, "", wcfg.encodings_dtype)
    encoder = encoder_identity(model_info(segmenter), segmenter.engine.input_px,
                               segmenter.config.runtime.precision)
    key = tiles_key(slide_sha256(slide_path), plan.scale.working_mpp, wcfg.tile_px,
                    wcfg.overlap_px, encoder, wcfg.encodings_dtype)
    return TileEncodings(root / paths.stem, key, wcfg.encodings_dtype)


def _tasks(slide_path: Path, plan: SlidePlan, tiles: list[Tile], paths: OutputPaths,
           instances: bool, config: Config, threads: int, key: str, store: TileEncodings
           ) -> list[BatchTask]:
    """The batches of this slide, with a fresh (or, resuming, the existing) label store
    marked with the run key."""
    paths.shards.mkdir(parents=True, exist_ok=True)
    dtype = instance_label_dtype(plan.grid.n_grid) if instances else "uint8"
    create_level0(paths.partial, plan.grid.working_size, plan.grid.stride, dtype)
    mark_store(paths.partial, key)
    return [BatchTask(batch=b, tiles=batch, slide_path=str(slide_path), scale=plan.scale,
                      working_size=plan.grid.working_size, zarr_path=str(paths.partial),
                      shard_path=str(paths.shard(b)), instances=instances, label_dtype=dtype,
                      config=config, threads=threads, run_key=key, encodings=store)
            for b, batch in enumerate(plan_batches(tiles, config.wsi.batch_tiles))]


def _run_batches(tasks: list[BatchTask], survey: Survey, plan: SlidePlan,
                 segmenter: Segmenter, client: Any, lanes: int, options: RunOptions,
                 stem: str, n_tiles: int) -> int:
    """The pending batches, in this process on its lanes (reusing the survey's encodings) or on
    the Dask client's workers; returns how many tiles they held."""
    embedding = survey.embedding
    pending = [task for task in tasks if not Path(task.shard_path).is_file()]
    if options.max_batches is not None:
        pending = pending[: options.max_batches]
    ran = sum(len(t.tiles) for t in pending)
    done_tiles = sum(len(t.tiles) for t in tasks) - ran
    with Progress(f"{stem} tiles", n_tiles, "tile", initial=done_tiles) as bar:
        if client is None:
            cancel = threading.Event()  # set when this stops early: lanes stop at their next tile
            with closing(run_in_lanes(
                    lambda task: segment_batch(task, embedding, plan.tissue, cancel, segmenter,
                                               survey.encodings),
                    pending, lanes, cancel)) as shards:
                for shard in shards:
                    bar.update(len(shard["tiles"]))
            return ran
        run_on_dask(client, pending, embedding, plan.tissue,
                    lambda task: bar.update(len(task.tiles)), segmenter.config.runtime)
    return ran


def _record(slide: Slide, plan: SlidePlan, tiles: list[Tile], n_batches: int,
            coarse_info: dict[str, Any], reference: SlideReference, segmenter: Segmenter,
            options: RunOptions) -> dict[str, Any]:
    """run.json before the final step (finalize adds objects, the store and the timings)."""
    scale, grid, config = plan.scale, plan.grid, segmenter.config
    return {
        **run_context(str(segmenter.engine.device)),
        "slide": {"path": str(slide.path), "level0_size": list(slide.dimensions),
                  "mpp": scale.slide_mpp, "backend": slide.backend,
                  "qupath_origin_level0": list(slide.bounds_xy),
                  "mpp_source": options.slide_mpp_source if options.slide_mpp else "metadata"},
        "working_mpp": scale.working_mpp,
        "tile_px": config.wsi.tile_px,
        "overlap_px": config.wsi.overlap_px,
        "tiles": {"grid": grid.n_grid, "tissue": len(grid.tiles), "segmented": len(tiles),
                  "batches": n_batches, "coarse": coarse_info},
        "reference": reference.info,
        "calibration": asdict(reference.embedding.calibration),
        "models": model_info(segmenter),
        "config": config_to_dict(config),
        "versions": versions(),
    }
