"""Config section of the whole-slide pipeline (`wsi`). Pixel sizes here are working pixels
(pixels at the working resolution, `working_mpp` µm/px) unless a key says otherwise."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from wsi_sat.config.base import Section


class WsiConfig(Section):
    tile_px: int = Field(1024, ge=64, le=8192, description="Tile side in working pixels.")
    overlap_px: int = Field(
        128, ge=0, le=2048,
        description="Overlap between neighbouring tiles in working pixels (even; split "
        "half-half: each tile keeps its core).",
    )
    batch_tiles: int = Field(
        8, ge=1, le=1024, description="Tiles per task (one result shard each)."
    )
    thumbnail_px: int = Field(
        2048, ge=128, le=16384, description="Longer side of the tissue-detection thumbnail."
    )
    tissue_min_contrast: float = Field(
        12.0, ge=0.0, le=442.0,
        description="Tissue detection: least RGB distance from the glass colour that counts "
        "as tissue (the Otsu threshold is used when higher).",
    )
    tissue_closing_iterations: int = Field(
        2, ge=0, le=64,
        description="Tissue detection: morphological closing of the thumbnail mask "
        "(iterations of a 3x3 cross).",
    )
    max_hole_um2: float = Field(
        20000.0, ge=0.0,
        description="Tissue detection: holes in the tissue up to this area (µm²; a gland "
        "lumen) are tissue; larger enclosed holes stay glass.",
    )
    min_tissue_area_um2: float = Field(
        500.0, ge=0.0,
        description="Tissue pieces smaller than this (µm²; 500 ≈ a 22 µm square, a few cells) "
        "are dropped as debris; physical, so a small fragment counts on any slide size.",
    )
    tissue_margin_um: float = Field(
        25.0, ge=0.0,
        description="Predictions are kept within this distance (µm) of detected tissue "
        "(farther out, glass and far debris, they are dropped), and glass enclosed by the "
        "target within this distance (a morphological closing) is kept as a lumen.",
    )
    glass_max_distance: float = Field(
        30.0, ge=0.0, le=442.0,
        description="Pixels within this RGB distance of the slide's glass colour (the median "
        "colour outside the tissue) are glass: a predicted glass pixel is kept only where "
        "target predicted on tissue-coloured patches encloses it (a lumen), never on its own.",
    )
    anchor_min_tissue_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="A predicted patch anchors the target when at least this fraction of its "
        "pixels is tissue-coloured (not glass).",
    )
    glass_block_px: int = Field(
        2, ge=1, le=64,
        description="Glass rule: pixels are judged glass by the mean colour of blocks of this "
        "many pixels a side (a 3x3-like smoothing of scanner noise, and fast).",
    )
    morphology_block_px: int = Field(
        4, ge=1, le=64,
        description="Glass rule: the growing and closing of the anchored target run on blocks "
        "of this many pixels a side (coarser blocks are cheaper; the rule's distances are far "
        "larger than a block).",
    )
    survey_tiles: int = Field(
        16, ge=1, le=4096,
        description="Open set (sat.open_set): tissue tiles surveyed before the tiles (spread "
        "evenly over the slide's tissue tiles; all of them when fewer).",
    )
    coarse_downsample: int = Field(
        0, ge=0, le=32,
        description="Coarse-to-fine: > 1 runs a matching-only pass at this many times the "
        "working µm/px over the tissue and segments only the tiles where it finds the target; "
        "0 or 1 = every tissue tile.",
    )
    coarse_min_prob: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Coarse pass: a tile is segmented when the coarse foreground probability "
        "anywhere in it reaches this.",
    )
    min_tissue_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="A tile is segmented when more than this fraction of it is tissue.",
    )
    class_name: str = Field("Region", description="QuPath class of the output objects.")
    class_color: list[int] = Field(
        default_factory=lambda: [0, 180, 80],
        description="Class colour, RGB 0-255: QuPath's classification colour and the OME-Zarr "
        "label colour.",
    )
    pyramid_min_px: int = Field(
        256, ge=16,
        description="OME-Zarr pyramid: halve until the longer side is at most this (the "
        "coarsest level, a viewer's overview).",
    )
    overview_px: int = Field(
        1024, ge=64, le=16384, description="Longer side of the overview PNG."
    )
    simplify_px: float = Field(
        0.5, ge=0.0, description="GeoJSON polygons: simplification tolerance in working pixels."
    )
    workers: int = Field(
        0, ge=0, le=512,
        description="Local Dask worker processes; 0 runs the batches in this process, on its "
        "lanes, without Dask (on one machine the fastest: no worker start, the models loaded "
        "once). N starts N local Dask workers (one per GPU on a multi-GPU machine).",
    )
    object_size_flag: float = Field(
        10.0, gt=1.0, le=1000.0,
        description="Instances: an object more than this many times larger than the reference's "
        "large objects (or smaller than its small ones) is flagged (objects.csv size_flag, a "
        "warning), never silently counted as one of them.",
    )
    keep_encodings: bool = Field(
        True,
        description="Keep each slide's tile encodings and the reference views' (in "
        "wsi.encodings_dir) so that a rerun into the same --out, with corrections or other "
        "settings of the decision, encodes only what is new. Changes speed and disk use, not "
        "results.",
    )
    encodings_dir: str = Field(
        "",
        description="Where kept encodings go; empty = `<--out>/encodings` (one folder per "
        "slide, `reference/` for the reference views). A fast local disk for cohorts.",
    )
    encodings_dtype: Literal["float16", "float32"] = Field(
        "float16",
        description="Precision of every encoding a slide run uses, kept or not (float16: "
        "half the disk; a rerun then decides exactly as the first run did).",
    )
    reference_margin: float = Field(
        0.25, ge=0.0, le=4.0,
        description="--reference-geojson: margin around the annotation's box, as a fraction "
        "of its size.",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> WsiConfig:
        if self.overlap_px % 2 or self.overlap_px >= self.tile_px:
            raise ValueError(f"overlap_px ({self.overlap_px}) must be even and smaller than "
                             f"tile_px ({self.tile_px})")
        return self
