import numpy as np
import pytest

from wsi_sat.config import WsiConfig
from wsi_sat.geometry import Scale
from wsi_sat.sat.maps import upsample
from wsi_sat.sat.patches import mask_fraction, patch_colour
from wsi_sat.sat.views import View, standard_views


def test_mask_fraction_uses_partial_last_row_and_column():
    # regression (GBMSeg): the last, partly covered row and column of patches were never used
    mask = np.zeros((50, 70), bool)
    mask[48:, 64:] = True  # exactly the last, partial patch (16 px patches → 4 x 5 grid)
    frac = mask_fraction(mask, (4, 5), (16.0, 16.0))
    assert frac.shape == (4, 5)
    assert frac[-1, -1] == pytest.approx(1.0)  # fraction of the pixels it really covers
    assert frac[:-1, :-1].sum() == 0


def test_mask_fraction_is_covered_fraction_not_all_pixels():
    mask = np.zeros((32, 32), bool)
    mask[:8, :16] = True  # half of the first 16x16 patch
    frac = mask_fraction(mask, (2, 2), (16.0, 16.0))
    assert frac[0, 0] == pytest.approx(0.5)


def test_patch_colour_shape_and_separation():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16] = (200, 100, 150)
    img[:, 16:] = (50, 50, 200)
    c = patch_colour(img, (2, 2), (16.0, 16.0))
    assert c.shape == (2, 2, 10)
    assert np.abs(c[0, 0] - c[0, 1]).max() > 0.1
    assert np.allclose(c[0, 0], c[1, 0])


@pytest.mark.parametrize("view", standard_views((30, 50), True, 0.75))
def test_views_map_points_back_to_the_original(view):
    a = np.zeros((30, 50), bool)
    a[4:7, 39:42] = True  # centre (x, y) = (40.5, 5.5)
    b = view.apply(a, nearest=True)
    y, x = np.argwhere(b).mean(axis=0) + 0.5
    back = view.to_original(np.array([[x, y]]))[0]
    assert abs(back[0] - 40.5) <= 1.0 and abs(back[1] - 5.5) <= 1.0


def test_view_masks_stay_binary():
    # regression (GBMSeg): masks were resized bicubically; a view must stay strictly binary
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    out = View("s", scale=0.75, original_hw=(40, 40)).apply(m, nearest=True)
    assert out.dtype == bool and set(np.unique(out)) <= {False, True}


def test_upsample_keeps_the_original_size():
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    up = upsample(grid, (10.0, 10.0), (27, 33))
    assert up.shape == (27, 33)
    assert up[0, 0] == pytest.approx(0.0) and up[-1, -1] == pytest.approx(11.0, abs=0.6)


def test_tissue_margin_grows_the_mask_by_a_disk():
    from wsi_sat.morphology import grow
    from wsi_sat.tiling.tissue import tissue_masks

    mask = np.zeros((41, 41), bool)
    mask[20, 20] = True
    grown = grow(mask, 5.0)
    assert grown.sum() == (np.hypot(*np.mgrid[-20:21, -20:21]) <= 5.0).sum()
    assert (grow(mask, 0.0) == mask).all()
    thumb = np.full((64, 64, 3), 250, np.uint8)
    thumb[20:40, 20:40] = (150, 80, 160)
    masks = tissue_masks(thumb, Scale(1.0, 1.0),
                         WsiConfig(tissue_margin_um=3.0, min_tissue_area_um2=4.0))
    assert masks.keep.sum() > masks.tissue.sum() > 0 and (masks.keep >= masks.tissue).all()


def test_pixel_colour_equals_scikit_image():
    from skimage.color import rgb2hed, rgb2lab

    from wsi_sat.sat.patches import pixel_colour

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    img[0, :10] = 0  # the dark (linear) segment of Lab
    lab, hed = rgb2lab(img), rgb2hed(img)
    want = np.concatenate([
        lab[..., :1] / 50.0 - 1.0, lab[..., 1:] / 64.0, np.maximum(hed[..., :2], 0) * 10.0,
    ], axis=-1)
    assert np.abs(pixel_colour(img) - want).max() < 1e-4


@pytest.mark.parametrize("hw", [(64, 64), (70, 53)])
def test_patch_colour_equals_plain_per_patch_statistics(hw):
    from wsi_sat.sat.patches import pixel_colour

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    grid = (-(-hw[0] // 16), -(-hw[1] // 16))
    pc = pixel_colour(img).astype(np.float64)
    # per patch, in float64, the partly covered last row / column clipped to the image
    blocks = [[pc[y : y + 16, x : x + 16].reshape(-1, 5) for x in range(0, hw[1], 16)]
              for y in range(0, hw[0], 16)]
    mean = np.array([[b.mean(axis=0) for b in row] for row in blocks])
    std = np.array([[b.std(axis=0) for b in row] for row in blocks])
    got = patch_colour(img, grid, (16.0, 16.0))
    assert np.abs(got - np.concatenate([mean, std], axis=-1)).max() < 1e-3


def test_small_tissue_pieces_are_dropped_by_physical_area():
    from wsi_sat.tiling.tissue import tissue_mask

    thumb = np.full((200, 200, 3), 245, np.uint8)
    thumb[20:60, 20:60] = (150, 80, 160)  # 1600 px
    thumb[150:156, 150:156] = (150, 80, 160)  # 36 px of debris
    # at 10 µm per thumbnail pixel, 10000 µm² = 100 px: the piece stays, the debris goes
    mask = tissue_mask(thumb, WsiConfig(), min_area_px=1e4 / 10.0**2)
    assert mask[40, 40] and not mask[152, 152]
    # a slide 4x larger has a 4x coarser thumbnail: the same piece is 100 px and still stays
    small = thumb[::4, ::4]
    assert tissue_mask(small, WsiConfig(), min_area_px=1e4 / 40.0**2)[10, 10]


@pytest.mark.parametrize("grid_hw,patch_hw,image_hw", [
    ((64, 64), (16.0, 16.0), (1024, 1024)), ((3, 5), (10.0, 10.0), (27, 33)),
    ((1, 7), (16.0, 16.0), (16, 100)), ((40, 31), (15.7, 16.3), (628, 505)),
    ((8, 8), (14.0, 14.0), (112, 112))])
def test_upsample_samples_like_torchs_bilinear_interpolation(grid_hw, patch_hw, image_hw):
    import torch
    import torch.nn.functional as F

    g = np.random.default_rng(1).standard_normal(grid_hw).astype(np.float32) * 3
    full = (max(image_hw[0], round(grid_hw[0] * patch_hw[0])),
            max(image_hw[1], round(grid_hw[1] * patch_hw[1])))
    want = F.interpolate(torch.from_numpy(g)[None, None], full, mode="bilinear",
                         align_corners=False)[0, 0, : image_hw[0], : image_hw[1]].numpy()
    got = upsample(g, patch_hw, image_hw)
    assert got.shape == image_hw and got.dtype == np.float32
    # float32 rounding of the sampling positions: within 1e-5 of the values' scale
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(g).max())
