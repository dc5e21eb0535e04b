"""A slide and its label store as napari layers (`wsi-sat view`): the slide's pyramid as an RGB
image and the labels over it, visible, named by the class, both scaled in µm so they align.

napari-ome-zarr alone opens a label store hidden (its labels reader sets them invisible, meant to
lie over an image in the same store) and without the slide, which is not in the store; this
opens both. Layers are lazy (dask arrays over the zarr chunks and the slide's tiles): nothing is
read until napari draws it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsi_sat.errors import RunStateError
from wsi_sat.pipeline.plan import OutputPaths
from wsi_sat.writers.ome_zarr import FORMAT


@dataclass(frozen=True)
class Layer:
    """napari's layer data: the data (a list of pyramid levels), keyword arguments, kind."""

    data: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "image"


def _slide_layer(record: dict[str, Any], stem: str, max_px: int) -> Layer | None:
    """The slide's pyramid (tiffslide's zarr levels), else a thumbnail; None when the slide
    file is no longer where run.json says."""
    import dask.array as da

    from wsi_sat.io.slide import Slide

    slide_info = record.get("slide") or {}
    path, mpp = Path(str(slide_info.get("path", ""))), float(slide_info.get("mpp") or 1.0)
    if not path.exists():
        return None
    with Slide(path, mpp) as slide:
        arrays = slide.pyramid_arrays()
        if arrays is not None:
            # napari's multiscale data: every level at the scale of level 0 (the first)
            return Layer([da.from_zarr(a) for a in arrays],
                         {"name": stem, "rgb": True, "scale": (mpp, mpp), "multiscale": True})
        thumb, downsample = slide.thumbnail(max_px)
    return Layer([thumb], {"name": stem, "rgb": True,
                           "scale": (mpp * downsample, mpp * downsample), "multiscale": False})


def _labels_layer(paths: OutputPaths, record: dict[str, Any]) -> Layer:
    import dask.array as da
    import zarr

    root = zarr.open_group(str(paths.zarr), mode="r", **FORMAT)
    attrs = root.attrs.asdict()
    multiscale = attrs["multiscales"][0]
    levels = [da.from_zarr(root[d["path"]]) for d in multiscale["datasets"]]
    working = float(record["working_mpp"])
    kwargs: dict[str, Any] = {"name": multiscale.get("name") or paths.stem, "visible": True,
                              "opacity": 0.6, "scale": (working, working),
                              "multiscale": len(levels) > 1}
    colors = (attrs.get("image-label") or {}).get("colors")
    if colors:  # region mode: the class colour (instances: napari colours each apart)
        kwargs["colormap"] = {0: [0, 0, 0, 0], **{c["label-value"]: [v / 255 for v in c["rgba"]]
                                                  for c in colors}}
    return Layer(levels, kwargs, "labels")


def slide_layers(out_dir: Path, stem: str, thumbnail_px: int = 4096) -> list[Layer]:
    """The layers of one slide of a results folder: its image (when the slide file is still
    where run.json says) and its labels."""
    paths = OutputPaths(stem, Path(out_dir))
    try:
        record = json.loads(paths.run_json.read_text())
    except (OSError, ValueError):
        raise RunStateError(f"no finished slide '{stem}' in '{out_dir}' (no readable "
                            f"{paths.run_json.name}); run `wsi-sat check {out_dir}`") from None
    image = _slide_layer(record, stem, thumbnail_px)
    return [layer for layer in (image, _labels_layer(paths, record)) if layer is not None]
