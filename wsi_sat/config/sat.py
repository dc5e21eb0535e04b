"""Config sections of the method itself (`sat`).

Pixel frames, named in the keys: `_input_px` are pixels of the encoder input (the longer image
side is 1024 for SAM); `min_area_px` and `sigmas_px` are pixels of the image as given (a tile:
working pixels).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from wsi_sat.config.base import Section

DecodeMode = Literal["union", "instances", "sam_instances", "map"]
INSTANCE_MODES = ("instances", "sam_instances")


class ReferenceConfig(Section):
    fg_min_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="A reference patch is foreground when at least this fraction of its "
        "pixels is in the mask (covered fraction, not 'every pixel').",
    )
    bg_max_fraction: float = Field(
        0.1, ge=0.0, le=1.0,
        description="A reference patch is background when at most this fraction of its "
        "pixels is in the mask; patches in between are ambiguous and unused.",
    )
    max_bank_patches: int = Field(
        2000, ge=16,
        description="Cap on reference patches per class in the matching bank: every example "
        "keeps up to cap / (2 x examples) of its patches, the rest of the cap goes to the "
        "larger ones in proportion (seeded subsample), so a small example (a correction) "
        "keeps all its patches.",
    )
    augment: bool = Field(
        True,
        description="Also encode flipped / rotated / rescaled copies of each reference: "
        "they enrich the bank and serve self-calibration.",
    )
    view_scale: float = Field(
        0.75, gt=0.0, le=4.0,
        description="Scale of the rescaled reference view (the flipped, rotated copy).",
    )


class MatchingConfig(Section):
    top_k: int = Field(
        8, ge=1, le=256, description="Neighbours averaged when scoring a target patch."
    )
    colour_weight: float = Field(
        0.35, ge=0.0, le=4.0,
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
    self_train_c: float = Field(
        1.0, gt=0.0, le=1e6,
        description="lr only: inverse L2 regularisation strength of the logistic regression.",
    )
    self_train_max_iter: int = Field(
        200, ge=1, le=10000, description="lr only: solver iterations."
    )
    self_train_margin: float = Field(
        0.03, ge=0.0, le=1.0, description="Margin around the threshold that counts as confident."
    )
    self_train_min_patches: int = Field(
        5, ge=1, le=100000,
        description="Self-training runs only when each side has at least this many confident "
        "patches.",
    )
    self_train_logit_scale: float = Field(
        50.0, gt=0.0, le=10000.0,
        description="Classifier log-odds per margin unit when its scores are put back on the "
        "margin's scale (margins live in about ±0.1).",
    )
    self_train_min_tissue: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Whole slides: a patch trains the self-training only when at least this "
        "fraction of it is tissue.",
    )
    exclude_radius_patches: int = Field(
        2, ge=0, le=16,
        description="Self-calibration: when scoring the reference against itself, bank "
        "patches within this many patches of the query are left out.",
    )


class PromptConfig(Section):
    min_margin: float = Field(
        0.02, ge=-1.0, le=1.0,
        description="Feature space: a positive candidate's fg-bg similarity margin must "
        "exceed the calibrated threshold by this much.",
    )
    clusters: int = Field(
        8, ge=1, le=64, description="Feature space: k-means clusters of the positives."
    )
    fallback_factor: int = Field(
        4, ge=1, le=100,
        description="When no candidate passes the cycle check, the best this many times "
        "max_positive (max_negative) confident patches stand in.",
    )
    exclusion_radius_input_px: float = Field(
        24.0, ge=0.0,
        description="Physical space: negatives closer than this to a positive are dropped "
        "(encoder-input pixels).",
    )
    sample_radius_input_px: float = Field(
        64.0, ge=1.0,
        description="Physical space: sparse sampling merges same-class points within this "
        "radius (encoder-input pixels).",
    )
    max_positive: int = Field(12, ge=1, le=256, description="Cap on positive points.")
    instance_sample_radius_input_px: float = Field(
        16.0, ge=1.0,
        description="Instances mode: sparse-sampling radius of the positives (encoder-input "
        "pixels; about one object apart).",
    )
    max_instances: int = Field(
        24, ge=1, le=1024, description="Instances mode: cap on positive points (one decode each)."
    )
    max_negative: int = Field(12, ge=0, le=256, description="Cap on negative points.")


class DecodeConfig(Section):
    mode: Literal["auto", "union", "instances", "sam_instances", "map"] = Field(
        "auto",
        description="map: the matching map alone, no SAM decode; union: all points in one SAM "
        "call; instances: the map's foreground split into one object each (a watershed from "
        "the distance peaks, at the reference objects' size: thousands per tile); "
        "sam_instances: one SAM call per positive point, merged by mask NMS; auto: "
        "self-calibration chooses map or union by the reference, then instances when the "
        "reference holds many small objects (sat.calibration.instances_min_objects, "
        "instances_max_object_fraction).",
    )
    refine: bool = Field(
        True, description="Second SAM pass fed with the first pass's mask logits."
    )
    use_map_prompt: bool = Field(
        True, description="Feed the matching map to SAM as its mask prompt."
    )
    mask_prompt_gain: float = Field(
        0.5, gt=0.0, le=100.0,
        description="SAM mask prompt: logits = gain x log-odds of the map probability.",
    )
    map_temperature: float = Field(
        0.02, gt=0.0, le=1.0,
        description="Margin → foreground probability: logistic of (margin - threshold) / "
        "temperature.",
    )
    nms_iou: float = Field(
        0.5, ge=0.0, le=1.0, description="sam_instances mode: mask NMS IoU threshold."
    )
    instance_min_agreement: float = Field(
        0.5, ge=0.0, le=1.0,
        description="sam_instances mode: a SAM mask is kept when at least this fraction of it "
        "is foreground in the matching map.",
    )
    instance_batch: int = Field(
        16, ge=1, le=256, description="sam_instances mode: prompts per batched decoder call."
    )
    seed_distance_radii: float = Field(
        0.6, gt=0.0, le=10.0,
        description="Instances: two objects' seeds (peaks of the foreground's distance to the "
        "background) are at least this many reference-object median radii apart.",
    )
    smooth_radii: float = Field(
        0.25, ge=0.0, le=10.0,
        description="Instances: the distance map is smoothed (Gaussian sigma) by this many "
        "median radii before its peaks are taken, so a ragged outline gives one seed.",
    )
    object_quantiles: list[float] = Field(
        default_factory=lambda: [0.02, 0.98],
        description="Instances: the reference objects' area range is taken between these "
        "quantiles; objects far outside it are flagged (wsi.object_size_flag).",
    )


class PixelConfig(Section):
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
    min_samples_leaf: int = Field(4, ge=1, le=1000, description="Random-forest leaf size.")
    sigmas_px: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0],
        description="Gaussian scales of the texture features, in image pixels.",
    )


class CalibrationConfig(Section):
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
    negative_weight: float = Field(
        0.0, ge=0.0, le=100.0,
        description="Threshold choice with negative examples: mean Dice on the reference views "
        "minus this x the fraction of negative-example pixels called target. 0: negative "
        "examples never move the threshold (on whole slides they act through the decision's "
        "veto, on their own kind only; a threshold moved for them costs recall everywhere).",
    )
    across_references: bool = Field(
        False,
        description="Several references: score each reference view against the other "
        "references only (true), or as one reference is scored, against the whole bank less "
        "each patch's neighbourhood (false). Across references, references that differ "
        "cannot reproduce one another, the lowest candidate threshold wins and target-free "
        "tissue is called target (docs/benchmarks.md).",
    )
    instances_min_objects: int = Field(
        20, ge=1, le=100000,
        description="The automatic mode counts objects (instances) when the references hold "
        "at least this many objects each on average (nuclei, cells) and they are small "
        "(instances_max_object_fraction): a region (an epidermis, glands) is never split.",
    )
    instances_max_object_fraction: float = Field(
        0.005, gt=0.0, le=1.0,
        description="... and their median area is at most this fraction of the reference "
        "image's (encoder-input) area.",
    )
    max_judged_references: int = Field(
        1, ge=1, le=1000,
        description="The pixel refinement and the decoding mode are judged on the first this "
        "many references (images first, then annotation crops in the order given); the "
        "threshold is chosen on all of them. With 1, examples added later refine the bank and "
        "the threshold but never flip the mode (a mode judged on several references flipped "
        "with each one added: HC18 k = 3 chose map over union, 0.67 against 0.73 Dice), and a "
        "reference of many corrections stays quick to prepare.",
    )
    pixel_min_gain: float = Field(
        0.03, ge=0.0, le=1.0,
        description="The per-pixel model is used only when it beats the plain map by at least "
        "this Dice on the reference's held-out halves (smaller gains on the reference did not "
        "carry over to targets).",
    )


class PostprocessConfig(Section):
    min_area_px: int = Field(
        64, ge=0, description="Objects and holes smaller than this (image pixels) are removed."
    )
    min_area_um2: float | None = Field(
        None, ge=0.0,
        description="Same in µm² when the pixel size is known (overrides min_area_px).",
    )
    fill_holes: bool = Field(True, description="Fill holes smaller than the min area.")


class OpenSetConfig(Section):
    enabled: bool = Field(
        True,
        description="Whole slides: before the tiles, a survey of the slide's tissue is "
        "clustered and clusters the reference never showed (typical foreground similarity "
        "below the open threshold and margin below the threshold) join the bank as "
        "background, so tissue the reference never showed stays empty.",
    )
    quantile: float = Field(
        0.1, gt=0.0, lt=1.0,
        description="Open threshold: this quantile of the reference's held-out foreground "
        "similarity (each half against the other; with several references, each against "
        "the others).",
    )
    negative_quantile: float = Field(
        0.5, gt=0.0, lt=1.0,
        description="Whole slides: a negative example vetoes the target only on patches of its "
        "kind, as like it as this quantile of its own held-out similarity (its halves), and "
        "nearer to it than to the target examples; lower quantiles let a varied negative veto "
        "target unlike it.",
    )
    slide_decision: bool = Field(
        True,
        description="Whole slides: one self-training classifier per slide, fitted on the "
        "reference bank (with the slide's never-shown tissue as background) and the survey's "
        "confident patches, scores every tile; off: the self-training is refitted tile by "
        "tile.",
    )
    clusters: int = Field(32, ge=2, le=512, description="k-means clusters of the survey.")
    restarts: int = Field(
        5, ge=1, le=64,
        description="k-means runs (seeds) over the survey; a patch is never-shown tissue when "
        "any run puts it in a never-shown cluster (one partition decides boundary clusters by "
        "chance).",
    )
    min_cluster_patches: int = Field(
        20, ge=1, le=100000,
        description="Clusters with fewer survey patches are never called novel.",
    )
    survey_patches: int = Field(
        8000, ge=100, le=1_000_000,
        description="Tissue patches sampled from the survey tiles (seeded, spread evenly).",
    )
    max_background_patches: int = Field(
        1000, ge=1, le=100000,
        description="Cap on slide patches added to the bank as background (seeded sample).",
    )


class SatConfig(Section):
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    pixel: PixelConfig = Field(default_factory=PixelConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    open_set: OpenSetConfig = Field(default_factory=OpenSetConfig)
    seed: int = Field(0, ge=0, description="Seed for every random choice (reproducible runs).")
