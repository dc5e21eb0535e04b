"""The typed configuration model: the ONLY place where defaults live.

`configs/default.yaml` mirrors these defaults (a test checks that they agree). A user changes them
with `--config file.yaml` (a partial tree) and `--set dotted.key=value` (repeatable); unknown keys
are errors, never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wsi_sat.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamModelConfig(_Section):
    name: Literal["mobilesam", "sam_vit_b", "sam_vit_l", "sam_vit_h"] = Field(
        "mobilesam", description="Segment Anything variant used as encoder and mask decoder."
    )
    checkpoint: Path | None = Field(
        None,
        description="Weight file for the SAM model; null = the embedded MobileSAM weights or "
        "$WSI_SAT_WEIGHTS_DIR/<official file name>.",
    )


class FeatureModelConfig(_Section):
    name: Literal[
        "sam-encoder", "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"
    ] = Field(
        "sam-encoder",
        description="Patch-feature backbone for matching; sam-encoder reuses the SAM image "
        "embedding (one encoder pass per image).",
    )
    checkpoint: Path | None = Field(
        None, description="DINOv2 checkpoint in the official layout (required for dinov2_*)."
    )
    input_px: int = Field(
        518, ge=56, le=2048, description="DINOv2 only: input side in pixels (multiple of 14)."
    )


class ModelsConfig(_Section):
    sam: SamModelConfig = Field(default_factory=SamModelConfig)
    features: FeatureModelConfig = Field(default_factory=FeatureModelConfig)


class RuntimeConfig(_Section):
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Compute device; auto picks cuda, then mps, then cpu."
    )
    threads: int = Field(
        0, ge=0, le=512, description="CPU threads for torch; 0 = torch's default."
    )
    encoder_batch: int = Field(
        0,
        ge=0,
        le=256,
        description="Images per image-encoder call; 0 = auto: 8 on GPUs, 1 on CPUs (measured "
        "on a 2-core CPU, MobileSAM: 1.3 s per 1024² image one at a time, 1.8 s in batches "
        "of 4).",
    )
    lanes: int = Field(
        0,
        ge=0,
        le=64,
        description="Batches of tiles a worker runs at once, on threads that share its models "
        "and split its cores evenly, so one lane's mostly single-threaded SAT runs beside "
        "another's encoder pass; 0 = auto: 2 when the worker has at least 2 cores, else 1. "
        "Each lane holds its own encoder activations (~1 GB per 1024² tile on a CPU).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Image-encoder precision: auto = bf16 autocast on CUDA GPUs that support "
        "it, fp32 elsewhere; bf16/fp16 force autocast on CUDA (ignored on CPU).",
    )
    keep_freed_memory: bool = Field(
        True,
        description="Linux/glibc: keep freed memory in the process between encoder calls "
        "(malloc: no mmap, heap trimming off, one arena) instead of faulting the encoder's "
        "~1 GB of activations in afresh on every tile (measured on a 2-core CPU, MobileSAM, "
        "1024² tiles: ~290k page faults and 1.9 s per tile -> ~1.2 s; on a Dask worker's task "
        "thread 1.6 -> 1.2 s). Local and SLURM workers also get "
        "GLIBC_TUNABLES=glibc.malloc.arena_max=1 (export it where you start workers yourself). "
        "The process keeps its memory high-water mark. Process-wide, applied when models load.",
    )
    compile_encoder: bool = Field(
        False,
        description="Compile the image encoder with torch.compile once per worker (measured "
        "on a 2-core CPU, MobileSAM: 1.39 -> 1.15 s per 1024² tile, after a one-off compile "
        "of ~85 s cold, ~10-20 s when inductor's on-disk cache is warm); pays off from a few "
        "hundred tiles per worker. Needs a C++ compiler on CPUs; falls back to the eager "
        "encoder, with a warning, if compiling fails.",
    )


class ReferenceConfig(_Section):
    fg_min_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A reference patch is foreground when at least this fraction of its "
        "pixels is in the mask (covered fraction, not 'every pixel').",
    )
    bg_max_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A reference patch is background when at most this fraction of its "
        "pixels is in the mask; patches in between are ambiguous and unused.",
    )
    max_bank_patches: int = Field(
        2000,
        ge=16,
        description="Cap on reference patches per class in the matching bank (random, "
        "seeded subsample).",
    )
    augment: bool = Field(
        True,
        description="Also encode flipped / rotated / rescaled copies of each reference: "
        "they enrich the bank and serve self-calibration.",
    )


class MatchingConfig(_Section):
    top_k: int = Field(
        8, ge=1, le=256, description="Neighbours averaged when scoring a target patch."
    )
    colour_weight: float = Field(
        0.35,
        ge=0.0,
        le=4.0,
        description="Weight of the colour/stain features fused with the encoder features.",
    )
    cycle: bool = Field(
        True,
        description="Backward (cycle-consistency) check: a target patch is kept only if its "
        "best match back lands in the same reference class.",
    )
    self_train: bool = Field(
        True,
        description="Transductive refinement: a linear classifier fitted on each target's own "
        "confident patches (margin beyond ±self_train_margin) re-scores the rest.",
    )
    self_train_method: Literal["lr", "lda"] = Field(
        "lr",
        description="lr: logistic regression; lda: closed-form shrinkage discriminant (faster).",
    )
    self_train_shrinkage: float = Field(
        1.0, ge=0.0, le=100.0,
        description="lda only: covariance shrinkage toward the identity (x mean variance).",
    )
    self_train_margin: float = Field(
        0.03, ge=0.0, le=1.0, description="Margin around the threshold that counts as confident."
    )
    exclude_radius_patches: int = Field(
        2,
        ge=0,
        le=16,
        description="Self-calibration: when scoring the reference against itself, bank "
        "patches within this many patches of the query are left out.",
    )


class PromptConfig(_Section):
    min_margin: float = Field(
        0.02,
        ge=-1.0,
        le=1.0,
        description="Feature space: a positive candidate's fg-bg similarity margin must "
        "exceed the calibrated threshold by this much.",
    )
    clusters: int = Field(
        8, ge=1, le=64, description="Feature space: k-means clusters of the positives."
    )
    exclusion_radius_px: float = Field(
        24.0,
        ge=0.0,
        description="Physical space: negatives closer than this to a positive are dropped "
        "(pixels of the encoder input, 1024 = longest side).",
    )
    sample_radius_px: float = Field(
        64.0,
        ge=1.0,
        description="Physical space: sparse sampling merges same-class points within this "
        "radius (encoder-input pixels).",
    )
    max_positive: int = Field(12, ge=1, le=256, description="Cap on positive points.")
    instance_sample_radius_px: float = Field(
        16.0,
        ge=1.0,
        description="Instances mode: sparse-sampling radius of the positives (encoder-input "
        "pixels; about one object apart).",
    )
    max_instances: int = Field(
        24, ge=1, le=1024, description="Instances mode: cap on positive points (one decode each)."
    )
    max_negative: int = Field(12, ge=0, le=256, description="Cap on negative points.")


class DecodeConfig(_Section):
    mode: Literal["auto", "union", "instances", "map"] = Field(
        "auto",
        description="union: all points in one SAM call; instances: one call per positive "
        "cluster, merged by mask NMS; map: the matching map alone, no SAM decode; auto: "
        "self-calibration on the reference chooses.",
    )
    refine: bool = Field(
        True, description="Second SAM pass fed with the first pass's mask logits."
    )
    use_map_prompt: bool = Field(
        True, description="Feed the matching map to SAM as its mask prompt."
    )
    nms_iou: float = Field(
        0.5, ge=0.0, le=1.0, description="Instances mode: mask NMS IoU threshold."
    )
    instance_batch: int = Field(
        16, ge=1, le=256, description="Instances mode: prompts per batched decoder call."
    )


class PixelConfig(_Section):
    enabled: bool = Field(
        True,
        description="Pixel refinement: a small per-pixel classifier fitted on the reference "
        "(colour, texture and the matching map) sharpens boundaries below the 16 px patch.",
    )
    samples: int = Field(
        20000, ge=1000, le=1_000_000, description="Reference pixels sampled to fit it."
    )
    trees: int = Field(24, ge=1, le=500, description="Random-forest trees.")
    max_depth: int = Field(14, ge=2, le=64, description="Random-forest depth.")
    sigmas_px: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0],
        description="Gaussian scales of the texture features, in original image pixels.",
    )


class CalibrationConfig(_Section):
    enabled: bool = Field(
        True,
        description="Self-calibration: choose threshold and mode that best reproduce the "
        "reference mask on held-out views of the reference.",
    )
    thresholds: list[float] = Field(
        default_factory=lambda: [round(-0.1 + 0.01 * i, 2) for i in range(21)],
        description="Candidate thresholds on the fg-bg similarity margin.",
    )
    default_threshold: float = Field(
        0.0, ge=-1.0, le=1.0, description="Margin threshold used when calibration is off."
    )
    pixel_min_gain: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="The per-pixel model is used only when it beats the plain map by at least "
        "this Dice on the reference's held-out halves (smaller gains on the reference did not "
        "carry over to targets).",
    )


class PostprocessConfig(_Section):
    min_area_px: int = Field(
        64, ge=0, description="Objects and holes smaller than this (original pixels) are removed."
    )
    min_area_um2: float | None = Field(
        None,
        ge=0.0,
        description="Same in µm² when the pixel size is known (overrides min_area_px).",
    )
    fill_holes: bool = Field(True, description="Fill holes smaller than the min area.")


class SatConfig(_Section):
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    pixel: PixelConfig = Field(default_factory=PixelConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    seed: int = Field(0, ge=0, description="Seed for every random choice (reproducible runs).")


class WsiConfig(_Section):
    tile_px: int = Field(1024, ge=64, le=8192, description="Tile side in working pixels.")
    overlap_px: int = Field(
        128, ge=0, le=2048,
        description="Overlap between neighbouring tiles in working pixels (even; split "
        "half-half: each tile keeps its core).",
    )
    batch_tiles: int = Field(
        8, ge=1, le=1024, description="Tiles per Dask task (one result shard each)."
    )
    thumbnail_px: int = Field(
        2048, ge=128, le=16384, description="Longer side of the tissue-detection thumbnail."
    )
    min_tissue_area_um2: float = Field(
        500.0,
        ge=0.0,
        description="Tissue pieces smaller than this (µm²; 500 ≈ a 22 µm square, a few cells) "
        "are dropped as debris; physical, so a small fragment counts on any slide size.",
    )
    tissue_margin_um: float = Field(
        25.0,
        ge=0.0,
        description="Predictions are kept within this distance (µm) of detected tissue; "
        "farther out (glass, far debris) they are dropped.",
    )
    coarse_downsample: int = Field(
        0,
        ge=0,
        le=32,
        description="Coarse-to-fine: > 1 runs a matching-only pass at this many times the "
        "working µm/px over the tissue and segments only the tiles where it finds the target; "
        "0 or 1 = every tissue tile.",
    )
    coarse_min_prob: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
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
        description="QuPath class colour, RGB 0-255.",
    )
    pyramid_min_px: int = Field(
        256, ge=16, description="OME-Zarr pyramid: halve until the longer side is below this."
    )
    simplify_px: float = Field(
        0.5, ge=0.0, description="GeoJSON polygons: simplification tolerance in working pixels."
    )
    workers: int = Field(
        0, ge=0, le=512,
        description="Local Dask worker processes; 0 runs the batches in this process, on its "
        "lanes, without Dask: on one machine the fastest (no worker start, the models loaded "
        "once; a dense 5k slide on a 2-core CPU: 53-58 s vs 69-73 s with 1 worker, side by "
        "side). N starts N local Dask workers (one per GPU on a multi-GPU machine).",
    )
    reference_margin: float = Field(
        0.25, ge=0.0, le=4.0,
        description="--reference-geojson: margin around the annotation's box, as a fraction "
        "of its size.",
    )


class Config(_Section):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    sat: SatConfig = Field(default_factory=SatConfig)
    wsi: WsiConfig = Field(default_factory=WsiConfig)


def default_config() -> Config:
    return Config()


def config_to_dict(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json")


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(
                f"unknown config key '{dotted}'; run `wsi-sat config show` to list the keys"
            )
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' is a section; give its sub-keys")
            out[key] = _merge(base[key], value, prefix=f"{dotted}.")
        else:
            out[key] = value
    return out


def _parse_assignment(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        tree = {part: tree}
    return tree


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then a YAML file (partial tree), then `key=value` overrides, validated."""
    data = config_to_dict(default_config())
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file '{path}' not found; pass an existing YAML file")
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML ({exc.__class__.__name__})")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of sections")
        data = _merge(data, loaded)
    for text in overrides:
        parts, value = _parse_assignment(text)
        data = _merge(data, _nest(parts, value))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config key '{where}': {first['msg']}") from None
