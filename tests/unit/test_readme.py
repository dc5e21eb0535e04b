"""The documentation covers every config key (docs/configuration.md) and every CLI command and
flag (docs/); the README stays a newcomer's page (short, every link resolving)."""

import re
from pathlib import Path

import click
from pydantic import BaseModel

from wsi_sat.cli import app
from wsi_sat.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


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
        assert f"`{name}" in DOCS, name
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert re.search(re.escape(opt) + r"\b", DOCS), (name, opt)


def test_readme_is_a_newcomers_page_and_links_resolve():
    assert len(README.encode()) <= 10_000
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]+|[A-Z]+\.md)\)", README):
        assert (ROOT / target).is_file(), target
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([a-z_]+\.md)\)", doc.read_text()):
            assert (ROOT / "docs" / target).is_file(), (doc.name, target)


def test_the_qupath_import_script_names_outputs_as_wsi_sat_does():
    """examples/qupath/import_wsi_sat_results.groovy strips the same slide suffixes, in the same
    order, as wsi-sat's output names (a drifted list would import nothing for some formats)."""
    import re

    from wsi_sat.io.slide import SLIDE_SUFFIXES

    script = (ROOT / "examples" / "qupath" / "import_wsi_sat_results.groovy").read_text()
    listed = re.search(r"def SLIDE_SUFFIXES = \[(.*?)\]", script, re.S).group(1)
    assert tuple(re.findall(r"'([^']+)'", listed)) == SLIDE_SUFFIXES
    assert "PathIO.readObjects" in script and ".geojson" in script


# the QuPath API the import script calls, each read in QuPath's source (v0.4+): Project,
# ProjectImageEntry (UriResource.getURIs since v0.4.0), ImageData, PathObjectHierarchy, PathIO,
# PathObject, MeasurementList, MetadataStore; and the Groovy/JDK calls beside them
QUPATH_CALLS = {"getProject", "getImageList", "getImageName", "getURIs", "readImageData",
                "saveImageData", "getHierarchy", "getFlattenedObjectList", "removeObjects",
                "addObjects", "readObjects", "getPathClass", "getMeasurementList",
                "getMeasurementNames", "isRootObject", "getMetadataString", "putMetadataValue"}
GROOVY_CALLS = {"toLowerCase", "endsWith", "length", "substring", "startsWith", "any",
                "isDirectory", "listFiles", "findAll", "each", "parse", "toString",
                "containsKey", "isFile", "collect", "toSet", "size", "isEmpty"}


def test_the_qupath_import_script_replaces_only_what_wsi_sat_wrote():
    """The script tags and recognises wsi-sat's objects by the GeoJSON's own tag, removes only
    tagged objects, defaults to a dry run, matches images by file before name, and calls no
    QuPath method beyond the ones read in QuPath's source."""
    import re

    from wsi_sat.writers.geojson import TAG

    script = (ROOT / "examples" / "qupath" / "import_wsi_sat_results.groovy").read_text()
    code = "\n".join(line for line in script.splitlines()
                     if not line.lstrip().startswith(("*", "/*", "//")))
    assert f"def TAG = '{TAG}'" in code and "def DRY_RUN = true" in code
    assert re.search(r"findAll \{\s*!it.isRootObject\(\) && it.getPathClass\(\) in classes "
                     r"&& writtenByWsiSat\(it, TAG\)", code)
    assert code.index("getURIs") < code.index("getImageName(), suffixes")
    calls = set(re.findall(r"\.(\w+)\(", code)) | set(re.findall(r"^\s*def \w+ = (\w+)\(", code,
                                                                 re.M))
    assert calls <= QUPATH_CALLS | GROOVY_CALLS, calls - QUPATH_CALLS - GROOVY_CALLS
    header = script[: script.index("*/")]
    for name in QUPATH_CALLS - {"getProject"}:
        if name in calls:
            assert name in header, f"{name} is not in the script's list of QuPath calls"
