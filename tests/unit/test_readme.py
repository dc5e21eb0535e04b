"""The documentation covers every config key (docs/configuration.md) and every CLI command and
flag (README.md)."""

import re
from pathlib import Path

import click
from pydantic import BaseModel

from wsi_sat.cli import app
from wsi_sat.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def _keys(model, prefix=""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _keys(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_config_key_is_documented():
    missing = [k for k in _keys(Config) if f"`{k}`" not in CONFIGURATION]
    assert not missing, missing


def _commands(group, prefix="wsi-sat"):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def test_every_command_and_flag_is_documented():
    for name, cmd in _commands(app):
        assert f"`{name}" in README, name
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert re.search(re.escape(opt) + r"\b", README), (name, opt)


def test_readme_links_resolve():
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]+)\)", README):
        assert (ROOT / target).is_file(), target


def test_the_qupath_import_script_names_outputs_as_wsi_sat_does():
    """examples/qupath/import_wsi_sat_results.groovy strips the same slide suffixes, in the same
    order, as wsi-sat's output names (a drifted list would import nothing for some formats)."""
    import re

    from wsi_sat.pipeline.plan import SLIDE_SUFFIXES

    script = (ROOT / "examples" / "qupath" / "import_wsi_sat_results.groovy").read_text()
    listed = re.search(r"def SLIDE_SUFFIXES = \[(.*?)\]", script, re.S).group(1)
    assert tuple(re.findall(r"'([^']+)'", listed)) == SLIDE_SUFFIXES
    assert "PathIO.readObjects" in script and ".geojson" in script
