"""Options and parameter types shared by the commands."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from wsi_sat.config import Config, load_config


class Mpp(click.ParamType):
    """A pixel size in µm/px: finite, between 0.01 and 100."""

    name = "MPP"

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            mpp = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number (µm/px)", param, ctx)
        from wsi_sat.io.slide import MPP_RANGE

        if not (MPP_RANGE[0] <= mpp <= MPP_RANGE[1]):  # also NaN and inf
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


def build_config(config_path: Path | None, overrides: tuple[str, ...], device: str | None = None
            ) -> Config:
    extra = (f"runtime.device={device}",) if device else ()
    return load_config(config_path, tuple(overrides) + extra)


def reference_options(command):  # type: ignore[no-untyped-def]
    """The options that say what the reference is (`run` and `reference prepare`), given to
    the command as one `request` (a `ReferenceRequest`)."""
    options = [
        click.option("--reference", "references", multiple=True,
                     type=click.Path(path_type=Path), help="Reference image (repeatable)."),
        click.option("--reference-mask", "reference_masks", multiple=True,
                     type=click.Path(path_type=Path), help="Mask of each --reference, same order."),
        click.option("--reference-mpp", type=MPP, default=None,
                     help="Pixel size of the reference image in µm/px (default: the working "
                          "mpp)."),
        click.option("--reference-geojson", "reference_geojson", multiple=True,
                     type=click.Path(path_type=Path),
                     help="QuPath annotations (GeoJSON, .geojson.gz) drawn on --reference-slide, "
                          "repeatable: the target class = examples, other classes = negatives "
                          "(corrections drawn on a result slide too)."),
        click.option("--reference-slide", "reference_slide", multiple=True,
                     type=click.Path(path_type=Path),
                     help="Slide each --reference-geojson was drawn on, same order (one slide "
                          "serves all)."),
        click.option("--mpp", type=MPP, default=None,
                     help="Working resolution in µm/px (default: --reference-mpp, else each "
                          "slide's level-0 mpp)."),
        click.option("--slide-mpp", type=MPP, default=None,
                     help="Level-0 pixel size in µm/px of the slides to segment, overriding (or "
                          "standing in for missing) metadata; per slide: a slide list "
                          "(`path,mpp` lines in a .csv/.tsv/.txt given as SLIDE)."),
        click.option("--reference-slide-mpp", type=MPP, default=None,
                     help="Level-0 pixel size of the --reference-slide(s), overriding their "
                          "metadata (default: their metadata, else --slide-mpp)."),
        click.option("--class-name", default=None,
                     help="QuPath class of the objects [wsi.class_name]; with "
                          "--reference-geojson the target class (default: its most frequent "
                          "class; other classes are negatives)."),
        negative_option, negative_mask_option,
    ]

    @functools.wraps(command)
    def with_request(**kwargs):  # type: ignore[no-untyped-def]
        from wsi_sat.reference import ReferenceRequest

        request = ReferenceRequest(
            images=kwargs.pop("references"), masks=kwargs.pop("reference_masks"),
            reference_mpp=kwargs.pop("reference_mpp"), working_mpp=kwargs.pop("mpp"),
            geojson=kwargs.pop("reference_geojson"), slides=kwargs.pop("reference_slide"),
            slide_mpp=kwargs.pop("slide_mpp"),
            reference_slide_mpp=kwargs.pop("reference_slide_mpp"),
            negatives=kwargs.pop("negatives"),
            negative_masks=kwargs.pop("negative_masks"), class_name=kwargs.pop("class_name"))
        return command(request=request, **kwargs)

    for option in reversed(options):
        with_request = option(with_request)
    return with_request


def default_hint(section: str, key: str) -> str:
    """A config default for help texts, e.g. "[1024]" (from the config model: one home)."""
    return f"[{getattr(getattr(Config(), section), key)}]"
