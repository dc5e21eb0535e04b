"""`wsi-sat reference prepare`: the reference encoded and calibrated once, for many runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wsi_sat.cli.options import (
    build_config,
    config_option,
    device_option,
    reference_options,
    set_option,
)
from wsi_sat.config import Config

if TYPE_CHECKING:
    from wsi_sat.reference import ReferenceRequest, ReferenceSet


def read_request(cfg: Config, request: ReferenceRequest) -> tuple[ReferenceSet, Config]:
    """The references and negatives as the options give them (no model needed), and the
    config with `wsi.class_name` taken from the annotation's class when the user set none."""
    from wsi_sat import api

    refs = api.read_reference_set(request, cfg)
    return refs, with_class_name(cfg, request.class_name, refs.class_name)


def with_class_name(cfg: Config, given: str | None, found: str | None) -> Config:
    """The objects take the reference's class (`found`) unless --class-name or the config
    named one."""
    from wsi_sat.config import WsiConfig
    from wsi_sat.reference.qupath import UNCLASSIFIED

    unset = given is None and cfg.wsi.class_name == WsiConfig().class_name
    if unset and found not in (None, UNCLASSIFIED):
        return cfg.model_copy(update={"wsi": cfg.wsi.model_copy(update={"class_name": found})})
    return cfg


@click.group("reference")
def reference_group() -> None:
    """Prepare a reference once for many runs (SLURM arrays, repeated cohorts)."""


@reference_group.command("prepare")
@reference_options
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path),
              help="The prepared reference file to write (e.g. gland.wsisat-ref).")
@config_option
@set_option
@device_option
def prepare(request: ReferenceRequest, out_file: Path, config_path: Path | None,
            overrides: tuple[str, ...], device: str | None) -> None:
    """Encode and calibrate the reference once and write it to --out; `wsi-sat run
    --reference-cache FILE` then starts from it (with the same --config/--set)."""
    from wsi_sat import api
    from wsi_sat.errors import OutputError

    cfg = build_config(config_path, overrides, device)
    if out_file.is_dir():
        raise OutputError(f"--out '{out_file}' is a folder; give the file to write")
    refs, cfg = read_request(cfg, request)
    t0 = time.perf_counter()
    seg = api.load_segmenter(cfg)
    reference = api.prepare_reference(seg, refs)
    key = api.save_prepared_reference(out_file, reference, seg, cfg.wsi.class_name)
    cal = reference.embedding.calibration
    click.echo(f"reference prepared in {time.perf_counter() - t0:.1f}s (mode {cal.mode}, "
               f"threshold {cal.threshold:+.3f}, pixel model {cal.use_pixel}) -> {out_file} "
               f"(key {key[:12]})")
