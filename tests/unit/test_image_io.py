import numpy as np
import pytest
import tifffile
from PIL import Image

from wsi_sat.errors import InputImageError, ReferenceError
from wsi_sat.io.image import list_images, read_image, read_mask
from wsi_sat.reference.images import load_reference, load_references


def test_rgb_grey_rgba_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out, alpha = read_image(tmp_path / "a.png")
    assert out.shape == (20, 30, 3) and alpha is None and (out == rgb).all()
    # regression (GBMSeg): no RGB/BGR swap anywhere on the way in
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 220
    Image.fromarray(red).save(tmp_path / "a.jpg", quality=95)
    jpg, _ = read_image(tmp_path / "a.jpg")
    assert jpg[..., 0].mean() > 200 and jpg[..., 2].mean() < 30
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    g, _ = read_image(tmp_path / "g.png")
    assert g.shape == (20, 30, 3) and (g[..., 0] == g[..., 2]).all()
    rgba = np.dstack([rgb, np.where(np.arange(30) < 15, 255, 0)[None].repeat(20, 0)]).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "r.png")
    r, alpha = read_image(tmp_path / "r.png")
    assert r.shape == (20, 30, 3) and alpha[:, :15].all() and not alpha[:, 15:].any()
    deep = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    tifffile.imwrite(tmp_path / "d.tif", deep)
    d, _ = read_image(tmp_path / "d.tif")
    assert d.dtype == np.uint8 and d.max() == 255 and d.min() == 0


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(InputImageError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputImageError, match="not a readable image"):
        read_image(tmp_path / "notes.png")


def test_masks_0_255_and_0_1(tmp_path):
    m = np.zeros((10, 10), np.uint8)
    m[2:5] = 1
    Image.fromarray(m).save(tmp_path / "m01.png")
    Image.fromarray(m * 255).save(tmp_path / "m255.png")
    assert (read_mask(tmp_path / "m01.png") == read_mask(tmp_path / "m255.png")).all()
    assert read_mask(tmp_path / "m01.png").sum() == 30


def test_reference_mask_sources(tmp_path):
    img = np.full((40, 40, 3), 128, np.uint8)
    m = np.zeros((40, 40), np.uint8)
    m[10:20] = 255
    Image.fromarray(img).save(tmp_path / "ref.png")
    with pytest.raises(ReferenceError, match="--reference-mask"):
        load_reference(tmp_path / "ref.png")
    Image.fromarray(m).save(tmp_path / "ref_mask.png")
    assert load_reference(tmp_path / "ref.png").mask_source.endswith("ref_mask.png")
    rgba = np.dstack([img, m])
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    ref = load_reference(tmp_path / "alpha.png")
    assert ref.mask_source == "alpha channel" and ref.mask.sum() == 400
    with pytest.raises(ReferenceError, match="one mask per"):
        load_references([tmp_path / "ref.png"], [tmp_path / "ref_mask.png"] * 2)


def test_list_images_expands_folders_and_skips_masks(tmp_path):
    for name in ("b.png", "a.jpg", "a_mask.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputImageError, match="no PNG"):
        list_images([empty])


def test_instance_label_masks_keep_every_object(tmp_path):
    """A label image (0 = background, 1..9 = objects) keeps all nine objects, not only the
    labels above half the maximum; a soft-edged 0/255 mask still splits at half its maximum."""
    from wsi_sat.io.image import binary_mask

    labels = np.zeros((90, 90), np.uint8)
    for i in range(9):
        labels[10 * i : 10 * i + 8, 5:60] = i + 1
    Image.fromarray(labels).save(tmp_path / "labels.png")
    assert (read_mask(tmp_path / "labels.png") == (labels > 0)).all()
    wide = labels.astype(np.uint16) * 1000  # 16-bit labels
    assert (binary_mask(wide) == (labels > 0)).all()
    soft = np.zeros((40, 40), np.uint8)
    soft[10:30, 10:30] = 255
    soft[9, 10:30] = soft[30, 10:30] = 100  # an anti-aliased edge below half
    soft[10:30, 9] = 200  # and one above
    assert binary_mask(soft).sum() == 20 * 20 + 20
