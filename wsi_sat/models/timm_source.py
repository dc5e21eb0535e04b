"""Where a timm feature encoder comes from, and building it: a model on the Hugging Face hub
read from the local cache (`hf download ORG/NAME` beforehand), a folder in the hub's layout
(config.json + model.safetensors or pytorch_model.bin), or a bare state-dict file.

Nothing is fetched from the network unless `models.features.download` is true, and never when
the hub's offline mode (HF_HUB_OFFLINE=1) is set: batch jobs on cluster nodes must not each pull
gigabytes, and nodes often have no internet at all.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wsi_sat.errors import ModelError, WeightsError
from wsi_sat.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, sha256_file
from wsi_sat.models.sam import load_state

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class TimmSource:
    """What to build and load: timm architecture and arguments, normalisation, weight file."""

    arch: str
    model_args: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: Path
    sha256: str


def hub_offline() -> bool:
    """The hub's offline mode, as huggingface_hub reads it (also when set after its import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def cached_hub_weights(hub_id: str) -> Path | None:
    """The weight file of `hub_id` in the local Hugging Face cache, if there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        found = try_to_load_from_cache(hub_id, name)
        if isinstance(found, str):
            return Path(found)
    return None


def resolve_source(spec: ModelSpec, checkpoint: Path | None, download: bool) -> TimmSource:
    """The files of `spec`: `checkpoint` (a hub-layout folder or a state-dict file) when given,
    else the hub repository from the local Hugging Face cache (or fetched, with `download`)."""
    if checkpoint is not None:
        config, weights = _from_path(spec, Path(checkpoint).expanduser())
    elif spec.hub_id:
        config, weights = _from_hub(spec, download)
    else:
        raise WeightsError(f"'{spec.name}' needs its weights: pass --set "
                           "models.features.checkpoint=PATH (a timm state dict, or a folder "
                           "with config.json and model.safetensors)")
    cfg = _read_config(config) if config is not None else {}
    arch = cfg.get("architecture") or spec.arch
    if not arch:
        raise WeightsError(f"'{config}' names no architecture; pass the model's own config.json")
    # the model card's arguments win over config.json's model_args, as in timm.create_model
    args = {**cfg.get("model_args", {}), **dict(spec.timm_kwargs)}
    pretrained = cfg.get("pretrained_cfg", {})
    mean = tuple(pretrained.get("mean") or spec.mean or IMAGENET_MEAN)
    std = tuple(pretrained.get("std") or spec.std or IMAGENET_STD)
    return TimmSource(arch, args, mean, std, weights, sha256_file(weights))


def _from_path(spec: ModelSpec, path: Path) -> tuple[Path | None, Path]:
    if path.is_file():
        if not spec.arch:
            raise WeightsError(f"'{path}' is a bare weight file: for '{spec.name}' pass the "
                               "folder that holds it with the model's config.json")
        return None, path
    if path.is_dir():
        config = path / "config.json"
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return (config if config.is_file() else None), path / name
        raise WeightsError(f"'{path}' holds none of {', '.join(WEIGHT_FILES)}; pass the model's "
                           "folder as downloaded from the hub")
    raise WeightsError(f"models.features.checkpoint '{path}' does not exist")


def _from_hub(spec: ModelSpec, download: bool) -> tuple[Path | None, Path]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo = str(spec.hub_id)
    local_only = hub_offline() or not download

    def fetch(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=local_only))
        except GatedRepoError:
            raise WeightsError(f"'{repo}' is gated: accept its terms on huggingface.co/{repo} "
                               "and log in (`hf auth login` or HF_TOKEN), then retry") from None
        except RepositoryNotFoundError:
            raise WeightsError(f"no hub repository '{repo}' (or it is private and no token "
                               "is set)") from None
        except (LocalEntryNotFoundError, EntryNotFoundError):
            return None
        except OSError as exc:  # the network, a proxy, a full cache disk
            raise WeightsError(f"could not fetch '{filename}' of '{repo}' "
                               f"({exc.__class__.__name__}); download it beforehand") from None

    weights = next((w for w in map(fetch, WEIGHT_FILES) if w is not None), None)
    if weights is None:
        how = ("on a machine with internet run `hf download " + repo + "`"
               + (" (gated: accept its terms on huggingface.co and `hf auth login` first)"
                  if spec.gated else "")
               + " and point HF_HOME or HF_HUB_CACHE at that cache, or pass --set "
               "models.features.checkpoint=FOLDER")
        if not local_only:
            raise WeightsError(f"'{repo}' holds none of {', '.join(WEIGHT_FILES)}")
        why = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else \
            "downloads are off (models.features.download=false)"
        raise WeightsError(f"'{spec.name}' ({repo}) is not in the Hugging Face cache "
                           f"{constants.HF_HUB_CACHE} and {why}: {how}")
    return fetch("config.json"), weights


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"'{path}' is not readable JSON ({exc.__class__.__name__}); "
                           "download the model again") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"'{path}' is not a timm config.json")
    return cfg


def _layer(value: Any) -> Any:
    """`layer:NAME` → timm.layers.NAME or torch.nn.NAME (model cards pass classes)."""
    if not (isinstance(value, str) and value.startswith("layer:")):
        return value
    import timm.layers

    name = value[len("layer:"):]
    found = getattr(timm.layers, name, None) or getattr(torch.nn, name, None)
    if found is None:
        raise ModelError(f"this timm has no layer '{name}'; upgrade timm")
    return found


def build_model(source: TimmSource) -> torch.nn.Module:
    """The ViT of `source` with its weights, classifier head removed, any input size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import timm
        from timm.models.vision_transformer import checkpoint_filter_fn

        args = {k: _layer(v) for k, v in source.model_args.items()}
        args.update(pretrained=False, num_classes=0, dynamic_img_size=True)
        not_vit = ModelError(f"'{source.arch}' is not a ViT with patch tokens; wsi-sat "
                             "matches patch features of ViT encoders")
        try:
            model = timm.create_model(source.arch, **args)
        except TypeError as exc:
            if "dynamic_img_size" in str(exc):
                raise not_vit from None
            raise ModelError(f"timm cannot build '{source.arch}' ({exc})") from None
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"timm cannot build '{source.arch}' ({exc})") from None
    if not (hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")):
        raise not_vit
    state = _read_state(source.weights)
    try:
        state = {k: v for k, v in checkpoint_filter_fn(state, model).items()
                 if k != "mask_token" and not k.startswith("head.")}
        missing, _ = model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # tensors of other shapes
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise WeightsError(f"'{source.weights}' does not fit '{source.arch}' ({first}); pass "
                           "the model's own weights and config.json") from None
    if missing:
        raise WeightsError(f"'{source.weights}' does not fit '{source.arch}' ({len(missing)} "
                           f"missing tensors, e.g. {missing[0]}); pass the model's own weights")
    return model.eval()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"'{path}' is not a readable safetensors file "
                               f"({exc.__class__.__name__}); download it again") from None
    return load_state(path)
