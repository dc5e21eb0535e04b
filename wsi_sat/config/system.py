"""Config sections for the models and for where and how they run (`models`, `runtime`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from wsi_sat.config.base import Section


class SamModelConfig(Section):
    name: Literal["mobilesam", "sam_vit_b", "sam_vit_l", "sam_vit_h"] = Field(
        "mobilesam", description="Segment Anything variant used as encoder and mask decoder."
    )
    checkpoint: Path | None = Field(
        None,
        description="Weight file for the SAM model; null = the embedded MobileSAM weights or "
        "$WSI_SAT_WEIGHTS_DIR/<official file name>.",
    )


class FeatureModelConfig(Section):
    name: str = Field(
        "sam-encoder",
        description="Patch-feature backbone for matching: sam-encoder reuses the SAM image "
        "embedding (one encoder pass per image); dinov2_vit{s,b,l,g}14 (official checkpoints); "
        "the pathology foundation models uni, uni2-h, virchow2, h-optimus-0, h-optimus-1, "
        "prov-gigapath; timm:hf-hub:ORG/NAME (any timm ViT on the Hugging Face hub); "
        "timm:ARCH (a timm ViT architecture with models.features.checkpoint).",
    )
    checkpoint: Path | None = Field(
        None, description="Weights of the feature model: for dinov2_* the official checkpoint "
        "(required); for the others a folder in the hub's layout (config.json + "
        "model.safetensors or pytorch_model.bin) or a state-dict file; null = the local "
        "Hugging Face cache.",
    )
    download: bool = Field(
        False,
        description="Fetch a hub model that is not in the local Hugging Face cache (needs "
        "internet; gated models need accepted terms and a token). Never while HF_HUB_OFFLINE=1. "
        "Default: the local cache only (`hf download ORG/NAME` beforehand).",
    )
    input_px: int = Field(
        0, ge=0, le=4096,
        description="Input side of the feature model (pixels of its own input, rounded to its "
        "patch size) for an image that fills the SAM encoder's input; whole slides keep tiles "
        "and reference at one fixed scale. 0 = auto: 518 for dinov2_*, else the SAM input "
        "side, i.e. each image at its own (working) resolution.",
    )

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        from wsi_sat.models.registry import feature_name_problem

        problem = feature_name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("input_px")
    @classmethod
    def _input_px(cls, value: int) -> int:
        if 0 < value < 56:
            raise ValueError("give 0 (auto) or at least 56 px")
        return value


class ModelsConfig(Section):
    sam: SamModelConfig = Field(default_factory=SamModelConfig)
    features: FeatureModelConfig = Field(default_factory=FeatureModelConfig)


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Compute device; auto picks cuda, then mps, then cpu."
    )
    threads: int = Field(
        0, ge=0, le=512, description="CPU threads for torch; 0 = torch's default."
    )
    encoder_batch: int = Field(
        0, ge=0, le=256,
        description="Images per image-encoder call; 0 = auto: 8 on GPUs, 1 on CPUs (where "
        "batching is slower; see docs/performance.md).",
    )
    prefetch_chunks: int = Field(
        1, ge=1, le=64,
        description="Encoder batches of tiles each lane reads ahead (one reader thread per "
        "lane, so a slide file is never read by two threads of a lane); more keeps a fast GPU "
        "fed where reads are slow or uneven (network storage). Each holds encoder_batch tiles "
        "in memory. Changes speed, not results.",
    )
    lanes: int = Field(
        0, ge=0, le=64,
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
    stall_timeout_s: float = Field(
        900.0, ge=10.0, le=86400.0,
        description="Dask runs: fail (exit 2, resumable with --resume) when no batch finishes "
        "for this long while workers are connected (a worker lost in a way Dask cannot see, "
        "a hung file system); time with no worker at all (SLURM jobs still queued) does not "
        "count. Longer than the slowest batch.",
    )
    worker_losses: int = Field(
        3, ge=0, le=100,
        description="Dask runs: times the run resubmits its batches after workers die with "
        "them (each time re-sending the reference) before it stops with exit 2.",
    )
    keep_freed_memory: bool = Field(
        True,
        description="Linux/glibc: keep freed memory in the process between encoder calls "
        "(malloc: no mmap, heap trimming off, one arena) instead of faulting the encoder's "
        "~1 GB of activations in afresh on every tile. Local and SLURM workers also get "
        "GLIBC_TUNABLES=glibc.malloc.arena_max=1 (export it where you start workers yourself). "
        "The process keeps its memory high-water mark. Process-wide, applied when models load.",
    )
    compile_encoder: bool = Field(
        False,
        description="Compile the image encoder with torch.compile once per worker; pays off "
        "from a few hundred tiles per worker (one-off compile of tens of seconds). Needs a "
        "C++ compiler on CPUs; falls back to the eager encoder, with a warning, if compiling "
        "fails.",
    )
