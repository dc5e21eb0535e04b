"""The demo: a real one-shot segmentation with no data of the user's.

scikit-image ships a real IHC image (`skimage.data.immunohistochemistry()`, DAB + haematoxylin).
Its DAB-positive (brown) cells are the target structure. The reference mask of one crop is
derived honestly by colour deconvolution (`rgb2hed`, Otsu threshold on the DAB channel, small
objects removed); the other crops are segmented by wsi-sat from that one example and scored
against the same stain-derived masks. Then a demo slide is built from the image (a pyramidal
tiled TIFF, 2x2 mirrored copies on glass, 0.5 µm/px assumed) and run end to end like a real
slide: tiles, OME-Zarr, GeoJSON, run.json and overview.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from wsi_sat import api
from wsi_sat.config import Config
from wsi_sat.reference import Reference
from wsi_sat.sat import dice
from wsi_sat.synthetic import write_pyramidal_tiff
from wsi_sat.writers.mask_png import write_mask_png
from wsi_sat.writers.ome_zarr import read_level

log = logging.getLogger(__name__)


def dab_mask(image: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """DAB-positive pixels by colour deconvolution; returns the mask and the threshold used."""
    dab = gaussian_filter(rgb2hed(image)[..., 2], 1.0)
    t = threshold_otsu(dab) if threshold is None else threshold
    return remove_small_objects(dab > t, max_size=31), float(t)


def demo_crops() -> dict[str, np.ndarray]:
    """Four 256x256 quadrants of the 512x512 IHC image."""
    img = data.immunohistochemistry()
    return {
        "reference": img[:256, :256],
        "target_top_right": img[:256, 256:],
        "target_bottom_left": img[256:, :256],
        "target_bottom_right": img[256:, 256:],
    }


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32).copy()
    out[mask] = 0.5 * out[mask] + 0.5 * np.array([0, 255, 0], np.float32)
    return out.astype(np.uint8)


DEMO_MPP = 0.5


def demo_slide(path: Path) -> np.ndarray:
    """Write the demo slide (pyramidal TIFF) and return its level-0 image."""
    img = data.immunohistochemistry()
    top = np.concatenate([img, img[:, ::-1]], axis=1)
    tissue = np.concatenate([top, top[::-1]], axis=0)
    slide = np.full((tissue.shape[0] + 256, tissue.shape[1] + 256, 3), 245, np.uint8)
    slide[128:-128, 128:-128] = tissue
    write_pyramidal_tiff(path, slide, DEMO_MPP, tile_px=256, min_px=256)
    return slide


def run_demo(out_dir: Path, config: Config) -> dict[str, float]:
    """Write inputs, masks and overlays under `out_dir`; return Dice per target crop and of
    the demo slide."""
    out_dir = Path(out_dir)
    crops = demo_crops()
    ref_img = crops.pop("reference")
    ref_mask, t = dab_mask(ref_img)
    (out_dir / "targets").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(exist_ok=True)
    (out_dir / "overlays").mkdir(exist_ok=True)
    Image.fromarray(ref_img).save(out_dir / "reference.png")
    write_mask_png(out_dir / "reference_mask.png", ref_mask)
    seg = api.load_segmenter(config)
    reference = seg.prepare_reference([(ref_img, ref_mask)], ["demo reference"])
    slide_reference = api.prepare_reference(seg, api.ReferenceRequest(
        images=[Reference("demo reference", ref_img, ref_mask, "DAB colour deconvolution")]))
    scores = {}
    for name, img in crops.items():
        Image.fromarray(img).save(out_dir / "targets" / f"{name}.png")
        result = seg.segment([img], reference)[0]
        write_mask_png(out_dir / "masks" / f"{name}.png", result.mask)
        Image.fromarray(overlay(img, result.mask)).save(out_dir / "overlays" / f"{name}.png")
        truth, _ = dab_mask(img, t)
        scores[name] = dice(result.mask, truth)
        log.info("%s: %.1f%% foreground, mode %s", name, 100 * result.mask.mean(), result.mode)

    slide_path = out_dir / "demo_slide.tif"
    slide_img = demo_slide(slide_path)
    api.run_slide(slide_path, slide_reference, seg, out_dir=out_dir / "results")
    truth, _ = dab_mask(slide_img, t)
    scores["demo_slide (OME-Zarr level 0)"] = dice(read_level(out_dir / "results" /
                                                             "demo_slide.ome.zarr", 0) > 0, truth)
    return scores
