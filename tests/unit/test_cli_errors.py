"""Every user mistake: exit code 2 and ONE line on stderr that says what to do, no traceback."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wsi_sat.cli import app


@pytest.fixture
def files(tmp_path):
    img = np.full((64, 64, 3), 200, np.uint8)
    Image.fromarray(img).save(tmp_path / "ref.png")
    Image.fromarray(img).save(tmp_path / "target.png")
    good = np.zeros((64, 64), np.uint8)
    good[10:30, 10:30] = 255
    Image.fromarray(good).save(tmp_path / "good_mask.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "empty_mask.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "full_mask.png")
    Image.fromarray((np.zeros((32, 40)) + 255 * (np.arange(40) < 20)).astype(np.uint8)).save(
        tmp_path / "small_mask.png")
    (tmp_path / "text.png").write_text("hello")
    from wsi_sat.synthetic import write_pyramidal_tiff

    write_pyramidal_tiff(tmp_path / "slide.tif", np.full((300, 300, 3), 200, np.uint8), 0.5,
                         tile_px=128, min_px=256)

    def feat(x0, cls):
        ring = [[x0, 10], [x0 + 50, 10], [x0 + 50, 60], [x0, 60], [x0, 10]]
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": cls}}}

    (tmp_path / "ann.geojson").write_text(json.dumps([feat(10, "Tumor"), feat(100, "Stroma")]))
    (tmp_path / "array.geojson").write_text("[]")
    (tmp_path / "overlap.geojson").write_text(json.dumps([feat(10, "Tumor"), feat(10, "Tumor"),
                                                          feat(30, "Stroma")]))
    return tmp_path


def run(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "argv, words",
    [
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/empty_mask.png", "--out", "{d}/o"], "empty"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/full_mask.png", "--out", "{d}/o"], "whole image"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/small_mask.png", "--out", "{d}/o"], "same size"),
        (["segment", "{d}/missing.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--out", "{d}/o"], "not found"),
        (["segment", "{d}/text.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--out", "{d}/o"], "not a readable image"),
        (["segment", "{d}/target.png", "--reference", "{d}/text.png", "--reference-mask",
          "{d}/good_mask.png", "--out", "{d}/o"], "not a readable image"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--out", "{d}/o"],
         "no mask for reference"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--out", "{d}/o", "--set", "sat.bogus=1"], "unknown config key"),
        (["config", "show", "--set", "models.sam.name=sam_vit_x"], "models.sam.name"),
        (["config", "show", "--config", "{d}/none.yaml"], "not found"),
        (["eval", "--pred", "{d}/nope", "--truth", "{d}"], "not a folder"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--negative", "{d}/target.png", "--negative-mask",
          "{d}/small_mask.png", "--out", "{d}/o"], "same size"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--negative", "{d}/ref.png", "--negative-mask",
          "{d}/good_mask.png", "--out", "{d}/o"], "marks pixels of the target"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--negative", "{d}/target.png", "--negative-mask",
          "{d}/empty_mask.png", "--out", "{d}/o"], "negative mask of"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--negative", "{d}/target.png", "--negative", "{d}/ref.png",
          "--negative-mask", "{d}/good_mask.png", "--out", "{d}/o"], "--negative-mask"),
        (["run", "{d}/slide.tif", "--reference-geojson", "{d}/ann.geojson",
          "--reference-slide", "{d}/slide.tif", "--class-name", "Gland", "--out", "{d}/o"],
         "no annotation of class 'Gland'"),
        (["run", "{d}/slide.tif", "--reference-geojson", "{d}/array.geojson",
          "--reference-slide", "{d}/slide.tif", "--out", "{d}/o"], "no polygon"),
        (["run", "{d}/slide.tif", "--reference", "{d}/ref.png", "--mpp", "nan"], "plausible"),
        (["run", "{d}/slide.tif", "--reference", "{d}/ref.png", "--slide-mpp", "-1"],
         "plausible"),
        (["run", "{d}/slide.tif", "--reference", "{d}/ref.png", "--reference-mpp", "1e9"],
         "plausible"),
        (["run", "{d}/slide.tif", "--reference", "{d}/ref.png", "--reference-mask",
          "{d}/good_mask.png", "--out", "{d}/text.png"], "is a file"),
        (["segment", "{d}/target.png", "--reference", "{d}/ref.png", "--bogus"], "--bogus"),
        (["run", "{d}/slide.tif", "--reference-geojson", "{d}/overlap.geojson",
          "--reference-slide", "{d}/slide.tif", "--out", "{d}/o"], "overlaps the target"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(files, argv, words):
    code, out = run([a.format(d=files) for a in argv])
    assert code == 2, out
    lines = [line for line in out.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out
    assert "Traceback" not in out


def test_config_show_prints_yaml_defaults():
    code, out = run(["config", "show", "--set", "sat.matching.top_k=3"])
    assert code == 0 and "top_k: 3" in out and "models:" in out


def test_models_list_names_the_registry():
    code, out = run(["models", "list"])
    assert code == 0
    for name in ("mobilesam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "dinov2_vitg14"):
        assert name in out


def test_eval_reports_dice_and_iou(tmp_path):
    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    a = np.zeros((10, 10), np.uint8)
    a[:5] = 255
    b = np.zeros((10, 10), np.uint8)
    b[:5, :5] = 255
    Image.fromarray(a).save(pred / "x.png")
    Image.fromarray(b).save(truth / "x.png")
    Image.fromarray(b).save(pred / "y.png")
    Image.fromarray(b).save(truth / "y.png")
    code, out = run(["eval", "--pred", str(pred), "--truth", str(truth), "--json",
                     str(tmp_path / "s.json")])
    assert code == 0
    assert "x\tdice 0.6667\tiou 0.5000" in out and "y\tdice 1.0000" in out
    assert "dice mean 0.8333" in out
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(pred / "y.png")
    code, out = run(["eval", "--pred", str(pred), "--truth", str(truth)])
    assert code == 2 and "original size" in out
