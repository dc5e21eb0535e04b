"""`wsi-sat models`, `wsi-sat config` and `wsi-sat demo`."""

from __future__ import annotations

from pathlib import Path

import click

from wsi_sat.cli.options import build_config, config_option, device_option, set_option
from wsi_sat.config import config_to_yaml


@click.group()
def models() -> None:
    """Registered models and their weights."""


@models.command("list")
def models_list() -> None:
    """Registered models, what they are for, and where their weights are."""
    from wsi_sat.models.registry import REGISTRY, candidate_weight_path
    from wsi_sat.models.timm_source import cached_hub_weights

    for spec in REGISTRY.values():
        if spec.hub_id:
            path = cached_hub_weights(spec.hub_id)
            where = str(path) if path else (f"not in the Hugging Face cache (hf download "
                                             f"{spec.hub_id}{'; gated' if spec.gated else ''})")
            click.echo(f"{spec.name:15s} {spec.kind:9s} {where} [{spec.hub_id}, "
                       f"{spec.input_mpp} µm/px]")
            continue
        path = candidate_weight_path(spec, None) if spec.filename else None
        where = "no weights needed" if not spec.filename else (
            str(path) if path and path.is_file() else f"not installed ({spec.source})")
        tag = " [embedded default]" if spec.embedded and spec.filename else ""
        click.echo(f"{spec.name:15s} {spec.kind:9s} {where}{tag}")
    click.echo("any timm ViT: models.features.name=timm:hf-hub:ORG/NAME (from the Hugging Face "
               "cache) or timm:ARCH with models.features.checkpoint")


@models.command("verify")
@config_option
@set_option
def models_verify(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Check the sha256 of every installed weight file (exit 2 on a mismatch)."""
    from wsi_sat.errors import WeightsError
    from wsi_sat.models.registry import REGISTRY, get_spec, verify
    from wsi_sat.models.timm_source import resolve_source

    cfg = build_config(config_path, overrides)
    chosen = {cfg.models.sam.name: cfg.models.sam.checkpoint,
              cfg.models.features.name: cfg.models.features.checkpoint}
    feature_spec = get_spec(cfg.models.features.name)
    if feature_spec.kind == "features" and (feature_spec.hub_id or feature_spec.name.startswith(
            "timm:")):  # a timm model: its files as a run would find them (no download)
        source = resolve_source(feature_spec, cfg.models.features.checkpoint, download=False)
        click.echo(f"{feature_spec.name:15s} {'found':10s} {source.weights} sha256 "
                   f"{source.sha256}")
    bad = []
    for spec in REGISTRY.values():
        status = verify(spec, chosen.get(spec.name))
        if status.state == "not-needed" or spec.hub_id:
            continue
        detail = f"{status.path}" if status.path else "-"
        click.echo(f"{spec.name:15s} {status.state:10s} {detail}"
                   + (f" sha256 {status.sha256}" if status.sha256 else ""))
        if status.state == "mismatch" or (spec.name in chosen and status.state == "missing"):
            bad.append(spec.name)
    if bad:
        raise WeightsError(f"weights missing or corrupt for: {', '.join(bad)}; see above")


@click.group("config")
def config_group() -> None:
    """The configuration."""


@config_group.command("show")
@config_option
@set_option
def config_show(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config as YAML."""
    click.echo(config_to_yaml(build_config(config_path, overrides)), nl=False)


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo_out"),
              show_default=True, help="Where the demo writes its inputs and results.")
@device_option
def demo(out_dir: Path, device: str | None) -> None:
    """Real segmentation on scikit-image's IHC image: no data of yours needed."""
    from wsi_sat.demo import run_demo

    scores = run_demo(out_dir, build_config(None, ("wsi.workers=0", "wsi.tile_px=512",
                                               "wsi.overlap_px=64"), device))
    for name, value in scores.items():
        click.echo(f"{name}: Dice {value:.3f} against its stain-derived (DAB) mask")
    mean = sum(scores.values()) / len(scores)
    click.echo(f"demo: mean Dice {mean:.3f}; reference, targets, masks/ and overlays/ in "
               f"{out_dir}/; whole-slide outputs (OME-Zarr, GeoJSON for QuPath, run.json, "
               f"overview) in {out_dir}/results/")


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True,
              help="Presence and sizes only (no file read whole, no cross-checks).")
def check(out_dir: Path, quick: bool) -> None:
    """Check that a results folder is complete and every output is what its run wrote."""
    from wsi_sat.errors import RunStateError
    from wsi_sat.pipeline.verify import check_output

    if not out_dir.is_dir():
        raise RunStateError(f"'{out_dir}' is not a folder; pass the --out of a run")
    checks = check_output(out_dir, quick)
    if not checks:
        raise RunStateError(f"'{out_dir}' holds no wsi-sat outputs")
    for c in checks:
        click.echo(f"{c.stem}: " + ("ok" if c.ok else "; ".join(c.problems)))
    bad = [c.stem for c in checks if not c.ok]
    if bad:
        raise RunStateError(f"{len(bad)} of {len(checks)} slides incomplete or inconsistent: "
                            f"{', '.join(bad)}")


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.argument("stem", required=False)
def view(out_dir: Path, stem: str | None) -> None:
    """Open a slide of a results folder in napari: the slide, and its labels over it (visible,
    named by the class, aligned in µm). STEM: the slide's output name (default: the only one).
    Needs napari in the same environment (`pip install 'napari[all]'`)."""
    from wsi_sat.errors import ConfigError, RunStateError
    from wsi_sat.writers.napari_layers import slide_layers

    stems = sorted(p.name[: -len(".run.json")] for p in Path(out_dir).glob("*.run.json"))
    if stem is None:
        if len(stems) != 1:
            raise RunStateError(f"'{out_dir}' holds {len(stems)} finished slides; name one: "
                                f"{', '.join(stems[:10]) or '(none)'}")
        stem = stems[0]
    layers = slide_layers(out_dir, stem)
    try:
        import napari
    except ImportError:
        raise ConfigError("napari is not installed here: `pip install 'napari[all]'` into this "
                          "environment, then rerun") from None
    viewer = napari.Viewer(title=f"wsi-sat: {stem}")
    for layer in layers:
        data = layer.data if layer.kwargs.get("multiscale") else layer.data[0]
        getattr(viewer, f"add_{layer.kind}")(data, **layer.kwargs)
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    napari.run()
