"""Objects counted, not only covered: the foreground split into one label per object.

The reference says how large its objects are (its instance labels, else its connected
components): their typical radius sets how far apart two objects' centres are at least. The
foreground's distance to the background peaks once per object; a watershed of the distance from
those peaks splits touching objects at their necks (nuclei in a crowd), and scales to thousands
of objects per tile without a model call per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed

from wsi_sat.morphology import label_components


@dataclass(frozen=True)
class ObjectSizes:
    """The reference's objects: how many per reference, and their area (px of the encoder
    input, so a target at another scale reads them at its own) at the low / middle / high
    quantile."""

    count: float
    area_low: float
    area_median: float
    area_high: float

    @property
    def radius(self) -> float:
        """The typical object's radius (input px): that of a disc of the median area."""
        return float(np.sqrt(self.area_median / np.pi))


def object_areas(mask: np.ndarray) -> np.ndarray:
    """Pixel areas of a reference's objects: its instance labels (integers, 0 = background,
    more than one id), else the 8-connected components of its mask."""
    ids = np.unique(mask) if mask.dtype != bool else np.zeros(0)
    if len(ids[ids > 0]) > 1:
        labels = mask
    else:
        labels = label_components(np.ascontiguousarray(mask > 0, dtype=np.uint8), 8)[1]
    areas = np.bincount(np.asarray(labels).ravel().astype(np.int64))
    return areas[1:][areas[1:] > 0]


def reference_objects(masks: list[np.ndarray], scales: list[float], quantiles: tuple[float,
                      float]) -> ObjectSizes | None:
    """The objects of the references' original views (`scales`: input px per image px each);
    None without any."""
    areas = [object_areas(m) * s * s for m, s in zip(masks, scales)]
    pooled = np.concatenate(areas) if areas else np.zeros(0)
    if not len(pooled):
        return None
    low, high = np.quantile(pooled, quantiles)
    return ObjectSizes(float(np.mean([len(a) for a in areas])), float(low),
                       float(np.median(pooled)), float(high))


def split_instances(fg: np.ndarray, radius_px: float, min_area_px: int, *,
                    seed_distance_radii: float, smooth_radii: float) -> np.ndarray:
    """(H, W) int32 labels of `fg` (bool), one per object: seeds at the maxima of the distance
    to the background (smoothed by `smooth_radii` x the radius) at least `seed_distance_radii`
    x the radius apart, a watershed of the distance from them within the foreground; objects
    under `min_area_px` dropped."""
    out = np.zeros(fg.shape, np.int32)
    if not fg.any():
        return out
    mask = np.ascontiguousarray(fg, dtype=np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    sigma = max(0.5, smooth_radii * radius_px)
    smooth = cv2.GaussianBlur(dist, (0, 0), sigma)
    _, comp = label_components(mask, 8)
    peaks = peak_local_max(smooth, min_distance=max(1, int(round(seed_distance_radii * radius_px))),
                           labels=comp.astype(np.int32), exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    labels = watershed(-smooth, markers, mask=fg).astype(np.int32)
    # a component without a peak (no room for the footprint) is an object of its own
    rest = fg & (labels == 0)
    if rest.any():
        extra, _ = ndimage.label(rest, structure=np.ones((3, 3)))
        labels = np.where(extra > 0, extra + len(peaks), labels)
    areas = np.bincount(labels.ravel())
    small = areas < max(1, min_area_px)
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return relabel_sequential(labels)[0].astype(np.int32, copy=False)
